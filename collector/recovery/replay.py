"""Replay: load backup CSV files into the configured database through the same sink code the
writer uses, so a value lands exactly as it would have without the outage.

For each file: lock it (a file the service still writes is skipped), check its header, read it in
batches, write each batch (retrying transient errors on the writer's schedule), count what was
written, what was already present (the primary key makes a repeated row a duplicate, never a
second row) and what was rejected (damaged lines and rows the database refuses go to a rejected
file with their line numbers), then move the file to ``replayed/`` so it is not loaded twice. A
replay that stops part way (the database went away, Ctrl-C) saves where it got to, and the next
one resumes there, so no rejected row is reported twice. A dry run reads and checks the same way
and asks the database which keys it already holds, without writing anything.

Batches are written by ``workers`` threads (one or more) while the calling thread reads the file
ahead (as the service's writers take batches from its buffer), but they are settled in file order:
the rejected file keeps the file's order, and the place a stopped replay resumes from is always the
end of the last batch before which everything was written. A batch written after it is written
again on resuming, which the primary key turns into rows already present.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, TypeVar

from collector.backup import CsvSpool, SpoolError
from collector.file_safety import FileModes
from collector.interpreter import fewer_collections
from collector.logs import log_event
from collector.model import TagValue
from collector.recovery.files import (
    FileBusy,
    clear_resume_point,
    load_resume_point,
    move_to_replayed,
    open_locked,
    save_resume_point,
)
from collector.recovery.progress import Progress, progress_for
from collector.recovery.reader import DAMAGED_CODE, Chunk, chunks
from collector.retry import RetryPolicy
from collector.sinks.base import KeyLookup, Sink, SinkError, TagKey, WriteResult
from collector.spool_format import Damaged, NotABackupFile, SpoolKind, read_header
from collector.write_attempt import write_once

log = logging.getLogger("collector.replay")


class Outcome(StrEnum):
    REPLAYED = "replayed"
    """Every row is in the database or in a rejected file; the file was moved to ``replayed/``."""
    CHECKED = "checked"
    """Dry run: the file was read and checked; nothing was written or moved."""
    IN_USE = "in use"
    """A running service is still writing the file (or another replay has it): left for later."""
    NOT_BACKUP = "not a backup"
    """The file does not start with a backup header: left alone."""
    UNREADABLE = "unreadable"
    DATABASE = "db failed"
    """The database failed (unavailable after the retries, or it refused the schema or login)."""
    STOPPED = "stopped"
    """The rejected file could not be written or the file could not be moved."""
    NOT_ATTEMPTED = "not tried"
    """An earlier file's database failure stopped the run before this file."""


class ExitCode(IntEnum):
    """What ``collector replay`` tells a script; the worst case wins."""

    OK = 0
    """Every file replayed (or checked) and every row is in the database."""
    REJECTED = 4
    """Every file replayed, but some rows were rejected: see the rejected files."""
    INCOMPLETE = 5
    """Some files were not replayed (in use, not backup files, unreadable, not movable): run again
    later or look at them."""
    DATABASE = 6
    """The database failed; the files not finished stay where they are: run again when it is back."""


@dataclass(slots=True)
class FileReport:
    path: Path
    outcome: Outcome = Outcome.REPLAYED
    read: int = 0
    """Records read in this run (rows plus damaged lines)."""
    written: int = 0
    """Rows inserted (in a dry run: rows that would be inserted)."""
    present: int | None = 0
    """Rows whose key was already stored (None in a dry run the database cannot answer)."""
    rejected: int = 0
    """Damaged lines plus rows the database refused, all in ``rejected_files``."""
    damaged: int = 0
    """The part of ``rejected`` that could not be read back as rows at all."""
    first: datetime | None = None
    last: datetime | None = None
    resumed_after_line: int | None = None
    moved_to: Path | None = None
    rejected_files: list[Path] = field(default_factory=list)
    detail: str = ""

    @property
    def finished(self) -> bool:
        return self.outcome in (Outcome.REPLAYED, Outcome.CHECKED)

    def note_rows(self, chunk: Chunk) -> None:
        self.read += chunk.records
        if not chunk.rows:
            return
        stamps = set(map(_timestamp_of, map(_value_of, chunk.rows)))
        first, last = min(stamps), max(stamps)
        if self.first is None or first < self.first:
            self.first = first
        if self.last is None or last > self.last:
            self.last = last


@dataclass(slots=True)
class ReplayReport:
    dry_run: bool
    files: list[FileReport] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(getattr(f, name) or 0 for f in self.files)

    @property
    def exit_code(self) -> ExitCode:
        outcomes = {f.outcome for f in self.files}
        if Outcome.DATABASE in outcomes:
            return ExitCode.DATABASE
        if any(not f.finished for f in self.files):
            return ExitCode.INCOMPLETE
        if self.total("rejected") or self.total("damaged"):
            return ExitCode.REJECTED
        return ExitCode.OK


class DatabaseFailed(Exception):
    def __init__(self, error: SinkError) -> None:
        super().__init__(error.describe())
        self.error = error


T = TypeVar("T")
SinkFactory = Callable[[], Sink]
LookupFactory = Callable[[], KeyLookup | None]
ProgressFactory = Callable[[str, int], Progress]


class Replayer:
    """Replays backup files into one database; see the module docstring.

    ``sink_factory`` and ``lookup_factory`` are called at most once, when the first file needs
    them, so that a run with nothing to do never touches the database. ``workers`` threads write
    batches at once (the sink must be safe to call from several threads, as every sink is).
    """

    def __init__(
        self,
        sink_factory: SinkFactory,
        *,
        lookup_factory: LookupFactory | None = None,
        batch_size: int = 500,
        workers: int = 1,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        progress: ProgressFactory = progress_for,
        wall_clock: Callable[[], float] = time.time,
        modes: FileModes | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._sink_factory = sink_factory
        self._lookup_factory = lookup_factory
        self._batch_size = batch_size
        self._workers = workers
        self._abandoned = threading.Event()
        """Set when a file's replay stops: batches still retrying give up instead of waiting."""
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._progress = progress
        self._wall_clock = wall_clock
        self._modes = modes or FileModes()
        self._sink: Sink | None = None
        self._lookup: KeyLookup | None = None
        self._lookup_built = False

    def run(
        self,
        files: Sequence[Path],
        *,
        dry_run: bool = False,
        on_file: Callable[[FileReport], None] | None = None,
    ) -> ReplayReport:
        """Replay (or check) ``files`` in order; ``on_file`` hears about each as it is done."""
        report = ReplayReport(dry_run=dry_run)
        stopped = False
        try:
            with fewer_collections():
                for path in files:
                    if stopped:
                        done = FileReport(
                            path, Outcome.NOT_ATTEMPTED, detail="stopped by the database failure above"
                        )
                    else:
                        done = self._check(path) if dry_run else self._replay(path)
                        stopped = done.outcome is Outcome.DATABASE
                    report.files.append(done)
                    self._log(done, dry_run)
                    if on_file is not None:
                        on_file(done)
        finally:
            self.close()
        return report

    def close(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()
        lookup, self._lookup = self._lookup, None
        self._lookup_built = False
        if lookup is not None:
            lookup.close()

    # ------------------------------------------------------------------ one file

    def _replay(self, path: Path) -> FileReport:
        report = FileReport(path)
        handle = self._open(path, report, exclusive=True)
        if handle is None:
            return report
        with handle:
            start = self._start(path, handle, report)
            if start is None:
                return report
            kind, offset, line = start
            try:
                sink = self._get_sink()
            except SinkError as exc:
                return self._database_failed(report, exc)
            settled = (line, offset)
            spool = CsvSpool(
                path.parent, kind=SpoolKind.REJECTED, wall_clock=self._wall_clock, modes=self._modes
            )
            progress = self._progress(path.name, _size(handle))
            written = self._written_in_order(
                sink, path, chunks(handle, kind, self._batch_size, offset=offset, line=line)
            )
            try:
                for chunk, result in written:
                    refused = self._refused_rows(path, chunk, result)
                    if refused:
                        rejected_path = spool.append(refused)
                        if rejected_path not in report.rejected_files:
                            report.rejected_files.append(rejected_path)
                    report.note_rows(chunk)
                    report.written += result.written
                    report.present = (report.present or 0) + result.duplicates
                    report.rejected += len(refused)
                    report.damaged += len(chunk.damaged)
                    settled = (chunk.end_line, chunk.end_offset)
                    progress.update(chunk.end_offset, report.read)
            except DatabaseFailed as exc:
                self._keep_place(path, handle, settled, (line, offset))
                return self._database_failed(report, exc.error)
            except SpoolError as exc:
                self._keep_place(path, handle, settled, (line, offset))
                report.outcome, report.detail = Outcome.STOPPED, f"cannot write the rejected file: {exc}"
                return report
            except OSError as exc:
                self._keep_place(path, handle, settled, (line, offset))
                report.outcome, report.detail = Outcome.UNREADABLE, f"read error: {exc.strerror or exc}"
                return report
            except BaseException:  # Ctrl-C: what is settled stays settled
                self._keep_place(path, handle, settled, (line, offset))
                raise
            finally:
                written.close()  # abandons what is not settled and waits for the writers
                progress.finish()
                spool.close()
            try:
                report.moved_to = move_to_replayed(path, self._modes)
            except OSError as exc:
                self._keep_place(path, handle, settled, None)
                report.outcome = Outcome.STOPPED
                report.detail = f"replayed, but cannot move it to replayed/: {exc.strerror or exc}"
                return report
            clear_resume_point(path)
        return report

    def _check(self, path: Path) -> FileReport:
        report = FileReport(path, Outcome.CHECKED)
        handle = self._open(path, report, exclusive=False)
        if handle is None:
            return report
        with handle:
            start = self._start(path, handle, report)
            if start is None:
                return report
            kind, offset, line = start
            try:
                lookup = self._get_lookup()
            except SinkError as exc:
                return self._database_failed(report, exc)
            if lookup is None:
                report.present = None
            progress = self._progress(path.name, _size(handle))
            try:
                for chunk in chunks(handle, kind, self._batch_size, offset=offset, line=line):
                    report.note_rows(chunk)
                    report.damaged += len(chunk.damaged)
                    report.rejected += len(chunk.damaged)
                    keys = [(row.value.tag_name, row.value.timestamp) for row in chunk.rows]
                    if lookup is None:
                        report.written += len(keys)
                    else:
                        present = _present(lookup, keys)
                        report.present = (report.present or 0) + present
                        report.written += len(keys) - present
                    progress.update(chunk.end_offset, report.read)
            except SinkError as exc:
                return self._database_failed(report, exc)
            except OSError as exc:
                report.outcome, report.detail = Outcome.UNREADABLE, f"read error: {exc.strerror or exc}"
                return report
            finally:
                progress.finish()
        return report

    def _open(self, path: Path, report: FileReport, *, exclusive: bool) -> BinaryIO | None:
        try:
            return open_locked(path, exclusive=exclusive)
        except FileBusy as exc:
            report.outcome, report.detail = Outcome.IN_USE, str(exc)
        except FileNotFoundError:
            report.outcome, report.detail = Outcome.UNREADABLE, "no such file"
        except OSError as exc:
            report.outcome, report.detail = Outcome.UNREADABLE, exc.strerror or str(exc)
        return None

    def _start(self, path: Path, handle: BinaryIO, report: FileReport) -> tuple[SpoolKind, int, int] | None:
        """The file's kind and where to start reading (after the header, or where a stopped
        replay got to); None if it is not a backup file."""
        try:
            kind, offset = read_header(handle)
        except NotABackupFile as exc:
            report.outcome, report.detail = Outcome.NOT_BACKUP, str(exc)
            return None
        point = load_resume_point(path, handle)
        if point is not None:
            report.resumed_after_line = point.line
            return kind, point.offset, point.line
        return kind, offset, 1

    def _keep_place(
        self, path: Path, handle: BinaryIO, settled: tuple[int, int], started: tuple[int, int] | None
    ) -> None:
        """Save where this replay got to, if it got anywhere, so the next one resumes there."""
        if settled == started:
            return
        try:
            save_resume_point(path, handle, *settled, modes=self._modes)
        except OSError as exc:
            log_event(
                log,
                logging.WARNING,
                "replay_resume_point_failed",
                "cannot save where the replay stopped; the next replay starts the file again",
                path=str(path),
                error=exc.strerror or str(exc),
            )

    def _database_failed(self, report: FileReport, error: SinkError) -> FileReport:
        report.outcome, report.detail = Outcome.DATABASE, error.describe()
        return report

    # ------------------------------------------------------------------ the database

    def _get_sink(self) -> Sink:
        if self._sink is None:
            self._sink = self._retrying("connect", self._open_sink)
        return self._sink

    def _open_sink(self) -> Sink:
        sink = self._sink_factory()
        try:
            sink.ping()
        except SinkError:
            sink.close()
            raise
        return sink

    def _get_lookup(self) -> KeyLookup | None:
        factory = self._lookup_factory
        if not self._lookup_built and factory is not None:
            self._lookup = self._retrying("connect", factory)
        self._lookup_built = True
        return self._lookup

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """``call``, retried on the writer's schedule (1 s, 2 s, 4 s) while it fails transiently: a
        database that is locked or restarting as replay opens it is waited for, as a failed batch
        is. A permanent error, or a transient one past the last retry, is raised."""
        attempt = 1
        while True:
            try:
                return call()
            except SinkError as exc:
                delay = self._retry.delay_after(attempt) if exc.transient else None
                if delay is None:
                    raise
                log_event(
                    log,
                    logging.WARNING,
                    "replay_retry",
                    f"cannot {what} to the database; retry {attempt} of {self._retry.max_retries}"
                    f" in {delay:g} s",
                    error=exc.describe(),
                )
            self._sleep(delay)
            attempt += 1

    def _written_in_order(
        self, sink: Sink, path: Path, pending_chunks: Iterator[Chunk]
    ) -> Generator[tuple[Chunk, WriteResult], None, None]:
        """Each chunk with the result of writing it, in file order. The writers are threads of
        their own, even when there is one: up to twice ``workers`` chunks are written or wait to be
        while the calling thread reads the next one (so a writer that finishes finds the next batch
        ready, while the reading thread is busy reading, settling in order behind a slower batch, or
        waiting for the interpreter). With the file read on the calling thread while the one writer
        waits for the database, a single writer into SQLite keeps 0.93 to 0.96 of plain
        ``executemany`` where writing each batch as soon as it is read kept 0.83 to 0.86
        (docs/benchmarks.md, "Replay"). Closing the iterator (or a failure) abandons what is not yet
        settled and waits for the writers to return."""
        self._abandoned.clear()
        pool = ThreadPoolExecutor(self._workers, thread_name_prefix="replay-writer")
        in_flight: deque[tuple[Chunk, Future[WriteResult]]] = deque()
        try:
            for chunk in pending_chunks:
                in_flight.append((chunk, pool.submit(self._write, sink, _values(chunk), path, chunk)))
                if len(in_flight) > 2 * self._workers:
                    done, future = in_flight.popleft()
                    yield done, future.result()
            while in_flight:
                done, future = in_flight.popleft()
                yield done, future.result()
        finally:
            self._abandoned.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _write(self, sink: Sink, batch: list[TagValue], path: Path, chunk: Chunk) -> WriteResult:
        """Write one batch, retrying transient errors on the configured schedule."""
        if not batch:
            return WriteResult()
        attempt = 1
        while True:
            outcome = write_once(sink, batch, attempt=attempt)
            if outcome.result is not None:
                return outcome.result
            error = outcome.error
            assert error is not None
            delay = self._retry.delay_after(attempt) if error.transient else None
            if delay is None or self._abandoned.is_set():
                raise DatabaseFailed(error)
            log_event(
                log,
                logging.WARNING,
                "replay_retry",
                f"batch write failed; retry {attempt} of {self._retry.max_retries} in {delay:g} s",
                file=path.name,
                lines=f"{chunk.rows[0].line}-{chunk.end_line}",
                size=len(batch),
                error=error.describe(),
            )
            self._sleep(delay)
            attempt += 1

    def _refused_rows(self, path: Path, chunk: Chunk, result: WriteResult) -> list[tuple[str, ...]]:
        """Rows for the rejected file in file order: damaged lines and rows the database refused,
        each with the source file and line in its reason."""
        lines: list[tuple[int, tuple[str, ...]]] = [
            (item.line, _damaged_row(path, item)) for item in chunk.damaged
        ]
        for error in result.rejected:
            row = chunk.rows[error.index]
            reason = f"{path.name} line {row.line}: {error.message}"
            lines.append((row.line, (*row.fields[:5], error.code, reason)))
        lines.sort(key=lambda numbered: numbered[0])
        return [row for _line, row in lines]

    def _log(self, report: FileReport, dry_run: bool) -> None:
        # INFO: the command prints the same on stdout; the log line is for -v and for audit trails.
        log_event(
            log,
            logging.INFO,
            "replay_checked" if dry_run else "replay_file_done",
            str(report.path),
            outcome=report.outcome.value,
            read=report.read,
            written=report.written,
            present=report.present,
            rejected=report.rejected,
            moved_to=str(report.moved_to) if report.moved_to else None,
            detail=report.detail or None,
        )


_value_of = itemgetter(1)
"""A row's value (``Row.value``), mapped in C."""
_timestamp_of = itemgetter(2)
"""A value's timestamp (``TagValue.timestamp``), mapped in C."""


def _values(chunk: Chunk) -> list[TagValue]:
    return list(map(_value_of, chunk.rows))


def _damaged_row(path: Path, item: Damaged) -> tuple[str, ...]:
    """A damaged record in the rejected file's columns: its first five fields as found (padded),
    anything beyond them kept in the reason."""
    fields = list(item.fields)
    head = (fields[:5] + [""] * 5)[:5]
    reason = f"{path.name} {item.where()}: {item.reason}"
    if len(fields) > 5:
        reason += f"; fields after the fifth: {fields[5:]!r}"
    return (*head, DAMAGED_CODE, reason)


def _present(lookup: KeyLookup, keys: list[TagKey]) -> int:
    """How many of ``keys`` a write would find already stored: those in the table, plus repeats
    within the batch itself."""
    unique = set(keys)
    return len(keys) - len(unique) + len(lookup.existing_keys(list(unique)))


def _size(handle: BinaryIO) -> int:
    return os.fstat(handle.fileno()).st_size
