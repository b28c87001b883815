"""Backup and rejected CSV files: where values go when the database cannot take them.

A :class:`CsvSpool` appends batches of rows to ``<kind>_YYYYMMDD_HHMMSS.csv`` (UTC) in its
directory, in the format :mod:`collector.spool_format` defines. Each append is written, flushed and
fsynced before it returns, so a row counts as backed up only once it is on disk; a failed append is
cut back off the file, so a crash or a full disk never leaves half a batch that looks whole. If the
directory cannot be written (disk full, permission denied) the spool says so and tries the fallback
directory; if that fails too the append raises :class:`SpoolError` and the caller counts the rows as
lost.

The file being appended to is held under an exclusive ``flock``, so a replay running beside the
service can tell a file still in use from a finished one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from opentelemetry import trace

from collector.file_safety import FileModes, create_exclusive, fsync_directory, make_dirs
from collector.logs import log_event
from collector.spool_format import (
    BACKUP_PREFIX,
    REJECTED_PREFIX,
    EncodedRows,
    SpoolKind,
    encode_rows,
    file_name,
)

# The prefixes are re-exported for the modules that name the files by them.
__all__ = ["BACKUP_PREFIX", "REJECTED_PREFIX", "CsvSpool", "SpoolError", "SpoolStats", "traced_append"]

log = logging.getLogger("collector.backup")

PRIMARY_RETRY_AFTER_S = 30.0
"""After the primary directory failed, the fallback is used for this long before trying it again."""


class SpoolError(OSError):
    """No directory could take the rows; they are lost and the caller must count them."""


@dataclass(frozen=True, slots=True)
class SpoolStats:
    files_created: int
    rows: int
    bytes: int
    failures: int
    """Appends that failed in a directory (each one logged), whether or not a fallback took them."""
    current_file: str | None
    directory: str
    using_fallback: bool


class CsvSpool:
    """Appends batches of CSV rows to timestamped files, one open file at a time, thread-safe."""

    def __init__(
        self,
        directory: Path | str,
        *,
        kind: SpoolKind = SpoolKind.BACKUP,
        modes: FileModes | None = None,
        fallback_dir: Path | str | None = None,
        max_file_bytes: int = 64 * 1024 * 1024,
        idle_close_s: float = 30.0,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dirs = [Path(directory)] + ([Path(fallback_dir)] if fallback_dir is not None else [])
        self._kind = kind
        self._modes = modes or FileModes()
        self._max_bytes = max_file_bytes
        self._idle_close_s = idle_close_s
        self._wall_clock = wall_clock
        self._clock = clock
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._dir_index = 0
        self._primary_failed_at: float | None = None
        self._last_write = 0.0
        self._files_created = 0
        self._rows = 0
        self._file_rows = 0
        self._bytes = 0
        self._failures = 0

    @property
    def directories(self) -> list[Path]:
        return list(self._dirs)

    @property
    def kind(self) -> SpoolKind:
        return self._kind

    def append(self, rows: Sequence[Sequence[str]] | EncodedRows) -> Path:
        """Write ``rows`` (or rows already encoded) durably; return the file they are in. Raises
        :class:`SpoolError`."""
        if not rows:
            raise ValueError("nothing to append")
        payload = rows.payload if isinstance(rows, EncodedRows) else encode_rows(rows)
        with self._lock:
            errors: list[str] = []
            for index in self._directory_order():
                try:
                    path = self._append_locked(index, payload)
                except OSError as exc:
                    self._failures += 1
                    self._close_locked("write failed")
                    if index == 0:
                        self._primary_failed_at = self._clock()
                    reason = exc.strerror or str(exc)
                    errors.append(f"{self._dirs[index]}: {reason}")
                    log_event(
                        log,
                        logging.ERROR,
                        "backup_write_failed",
                        f"cannot write {self._kind.value} file in {self._dirs[index]}",
                        directory=str(self._dirs[index]),
                        error=reason,
                        errno=errno.errorcode.get(exc.errno or 0, exc.errno),
                        rows=len(rows),
                        fallback=(index + 1 < len(self._dirs)),
                    )
                    continue
                self._rows += len(rows)
                self._file_rows += len(rows)
                self._bytes += len(payload)
                if index == 0:
                    self._primary_failed_at = None
                return path
            raise SpoolError(errno.EIO, f"no directory could take {len(rows)} rows: " + "; ".join(errors))

    def _directory_order(self) -> list[int]:
        order = list(range(len(self._dirs)))
        failed_at = self._primary_failed_at
        if len(order) > 1 and failed_at is not None and self._clock() - failed_at < PRIMARY_RETRY_AFTER_S:
            order = order[1:] + order[:1]
        return order

    def _append_locked(self, index: int, payload: bytes) -> Path:
        if self._file is None or self._dir_index != index or self._file_full():
            self._close_locked("size limit" if self._file_full() else "directory changed")
            self._open_locked(index)
        assert self._file is not None and self._path is not None
        _write_durably(self._file, payload)
        self._last_write = self._clock()
        return self._path

    def _file_full(self) -> bool:
        return self._file is not None and self._file.tell() >= self._max_bytes

    def _open_locked(self, index: int) -> None:
        directory = self._dirs[index]
        make_dirs(directory, self._modes)
        created = datetime.fromtimestamp(self._wall_clock(), UTC)
        # The header is written and fsynced under a hidden name first, and the file takes its real
        # name only then: a process killed in between leaves no empty file that looks like a
        # backup file (a later start removes the hidden one).
        staging = directory / f".{self._kind.value}-{os.getpid()}.new"
        staging.unlink(missing_ok=True)
        _clear_stale_staging(directory, self._kind)
        # Unbuffered bytes: a write that fails part-way leaves nothing in a buffer that a later
        # flush could put back after the file has been cut to its last whole row. Exclusive and
        # never through a link: a name that exists is never written into.
        handle = create_exclusive(staging, self._modes)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            _write_durably(handle, encode_rows([self._kind.header]))
            path = self._publish(staging, directory, created)
        except OSError:
            with contextlib.suppress(OSError):
                handle.close()
            staging.unlink(missing_ok=True)
            raise
        self._file, self._path, self._dir_index = handle, path, index
        self._file_rows = 0
        self._files_created += 1
        log_event(
            log,
            logging.WARNING if self._kind is SpoolKind.BACKUP else logging.INFO,
            f"{self._kind.value}_file_created",
            f"created {self._kind.value} file {path}",
            path=str(path),
            fallback=index > 0,
        )

    def _publish(self, staging: Path, directory: Path, created: datetime) -> Path:
        """Give the staged file the first free name (a hard link never replaces a name that exists),
        drop the staging name and make both durable."""
        for suffix in range(10_000):
            path = directory / file_name(self._kind, created, suffix)
            try:
                os.link(staging, path)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                # A file system without hard links (FAT, some network mounts): rename, after
                # checking the name is free; only another writer in the same instant could race.
                if path.exists():
                    continue
                os.rename(staging, path)
            staging.unlink(missing_ok=True)
            fsync_directory(directory)
            return path
        base = file_name(self._kind, created).removesuffix(".csv")
        raise OSError(errno.EEXIST, f"too many {base} files in {directory}")

    def _close_locked(self, reason: str) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()  # closing also releases the flock
            if self._file_rows:
                # The operator's cue: this file is complete and no longer locked.
                ready = "ready to replay" if self._kind is SpoolKind.BACKUP else "ready to inspect"
                log_event(
                    log,
                    logging.WARNING if self._kind is SpoolKind.BACKUP else logging.INFO,
                    f"{self._kind.value}_file_closed",
                    f"{self._kind.value} file closed, {ready}",
                    path=str(self._path),
                    rows=self._file_rows,
                    reason=reason,
                )
            self._path = None
            self._file_rows = 0

    def close_if_idle(self) -> bool:
        """Close the open file if nothing was written for ``idle_close_s``; True if it closed."""
        with self._lock:
            if self._file is None or self._clock() - self._last_write < self._idle_close_s:
                return False
            self._close_locked(f"nothing written for {self._idle_close_s:g} s")
            return True

    def rotate(self, reason: str = "rotated") -> None:
        """Close the current file; the next append starts a new one."""
        with self._lock:
            self._close_locked(reason)

    def close(self) -> None:
        self.rotate("closing")

    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(
                files_created=self._files_created,
                rows=self._rows,
                bytes=self._bytes,
                failures=self._failures,
                current_file=str(self._path) if self._path else None,
                directory=str(self._dirs[self._dir_index]),
                using_fallback=self._dir_index > 0 and self._file is not None,
            )


def _clear_stale_staging(directory: Path, kind: SpoolKind) -> None:
    """Remove staging files of processes that died while creating a file (nobody holds their lock;
    a live process holds its own until the file is published)."""
    for stale in directory.glob(f".{kind.value}-*.new"):
        try:
            fd = os.open(stale, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            stale.unlink(missing_ok=True)
        except OSError:
            pass  # held: another process is creating its file right now
        finally:
            os.close(fd)


_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def _write_durably(handle: BinaryIO, payload: bytes) -> None:
    """Append ``payload`` and fsync it; on failure (a full disk accepts part of a write, then
    refuses) cut the file back to where it was, so it holds only whole, counted rows."""
    start = handle.tell()
    try:
        view = memoryview(payload)
        while view:
            written = handle.write(view)
            if not written:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            view = view[written:]
        os.fsync(handle.fileno())
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(handle.fileno(), start)
            handle.seek(start)
        raise


def traced_append(
    tracer: trace.Tracer, spool: CsvSpool, rows: Sequence[Sequence[str]] | EncodedRows, *, reason: str
) -> Path:
    """:meth:`CsvSpool.append` inside a ``collector.<kind>.write`` span (a child of whatever span is
    current, so a backup write after a failed attempt shows under that attempt). Raises
    :class:`SpoolError`, recorded on the span."""
    with tracer.start_as_current_span(
        f"collector.{spool.kind.value}.write",
        attributes={
            "collector.spool.kind": spool.kind.value,
            "collector.rows": len(rows),
            "collector.reason": reason,
        },
        record_exception=False,
    ) as span:
        try:
            path = spool.append(rows)
        except SpoolError as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
            raise
        span.set_attribute("collector.spool.file", str(path))
        return path
