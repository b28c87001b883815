"""Replay with several writers: batches written at once, settled in file order, resumable."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import collector.recovery.commands as commands_module
import collector.recovery.replay as replay_module
from collector.config import Config
from collector.model import TagValue
from collector.recovery.commands import replay_command
from collector.recovery.files import resume_path
from collector.recovery.reader import Chunk
from collector.recovery.replay import ExitCode, Outcome, Replayer, ReplayReport
from collector.retry import RetryPolicy
from collector.sinks.base import PermanentSinkError, Sink, TransientSinkError, WriteResult
from collector.sinks.sqlite import SqliteSink, ddl
from tests.fakes import WrappedSink
from tests.recovery_support import assert_table_matches, expected_rows, sample_values, write_backup

BATCH = 50


def _replayer(db: Path, *, workers: int = 3) -> Replayer:
    return Replayer(lambda: SqliteSink(db), batch_size=BATCH, workers=workers, sleep=lambda _s: None)


class Gated(WrappedSink):
    """A real SQLite sink whose batches are told apart by their first value: the batch starting
    with ``fail_at`` fails (transiently, every time, or permanently, or with Ctrl-C), but the first
    time only after ``later`` batches that come after it in the file have been committed. It counts
    the rows of those later batches that it committed before the failure."""

    def __init__(self, inner: Sink, *, fail_at: TagValue, later: int, error: str = "transient") -> None:
        super().__init__(inner)
        self._fail_at = fail_at
        self._error = error
        self._later = later
        self._later_written = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._failed = False
        self.rows_after = 0

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        if batch[0] == self._fail_at:
            with self._lock:
                first, self._failed = not self._failed, True
            if first:
                for _ in range(self._later):
                    assert self._later_written.acquire(timeout=10), "the later batches were never written"
            if self._error == "interrupt":
                raise KeyboardInterrupt
            if self._error == "permanent":
                raise PermanentSinkError("no such table: TAG_DATA", code="SQLITE_ERROR")
            raise TransientSinkError("database is locked", code="SQLITE_BUSY")
        result = self.inner.write(batch)
        if batch[0].timestamp > self._fail_at.timestamp:
            with self._lock:
                self.rows_after += result.written
            self._later_written.release()
        return result


def _gated_replayer(db: Path, **gate: object) -> tuple[Replayer, list[Gated]]:
    made: list[Gated] = []

    def make_sink() -> Sink:
        sink = Gated(SqliteSink(db), **gate)  # type: ignore[arg-type]
        made.append(sink)
        return sink

    replayer = Replayer(
        make_sink, batch_size=BATCH, workers=3, retry=RetryPolicy(3, (1.0, 2.0, 4.0)), sleep=lambda _s: None
    )
    return replayer, made


def _rejected_reasons(directory: Path) -> list[str]:
    reasons = []
    for path in sorted(directory.glob("rejected_*.csv")):
        with open(path, encoding="utf-8", newline="") as handle:
            reasons.extend(row[6] for row in list(csv.reader(handle))[1:])
    return reasons


def test_several_writers_replay_every_row_and_report_rejections_in_file_order(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    with sqlite3.connect(db) as conn:  # a narrow text column: long texts are refused by the database
        conn.executescript(ddl().replace("<= 4000", "<= 5"))
    values = sample_values(1000)
    path = write_backup(backup, values)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for number in (40, 420, 901):  # damaged lines spread over many batches
        lines[number - 1] = "damaged\n"
    path.write_text("".join(lines), encoding="utf-8")

    report = _replayer(db, workers=4).run([path])
    (done,) = report.files
    damaged = {40, 420, 901}
    kept = [v for i, v in enumerate(values) if i + 2 not in damaged]
    refused = [v for v in kept if isinstance(v.value, str) and len(v.value) > 5]
    assert refused
    assert (done.outcome, done.read, done.damaged) == (Outcome.REPLAYED, 1000, 3)
    assert (done.written, done.rejected) == (len(kept) - len(refused), len(refused) + 3)
    assert report.exit_code is ExitCode.REJECTED
    assert_table_matches(db, expected_rows([v for v in kept if v not in refused]))
    lines_reported = [int(reason.split(" line ")[1].split(":")[0]) for reason in _rejected_reasons(backup)]
    assert lines_reported == sorted(lines_reported) and len(lines_reported) == done.rejected


@pytest.mark.parametrize("error", ["transient", "permanent"])
def test_a_failed_batch_stops_at_the_last_batch_before_which_everything_was_written(
    tmp_path: Path, error: str
) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    values = sample_values(600)
    path = write_backup(backup, values)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = "damaged\n"  # in the first batch: reported once, not again when resumed
    path.write_text("".join(lines), encoding="utf-8")
    fail_at = values[1 + 3 * BATCH]  # the first row of the fourth batch (one row is damaged)

    replayer, made = _gated_replayer(db, fail_at=fail_at, later=2, error=error)
    report = replayer.run([path])
    (gated,) = made
    (stopped,) = report.files
    assert stopped.outcome is Outcome.DATABASE and report.exit_code is ExitCode.DATABASE
    # Three batches settled; the ones committed after the failing batch are not counted yet.
    assert (stopped.written, stopped.rejected) == (3 * BATCH, 1)
    assert gated.rows_after >= 2 * BATCH
    assert resume_path(path).exists() and path.exists()

    (resumed,) = _replayer(db).run([path]).files
    assert resumed.resumed_after_line == 3 * BATCH + 2
    assert (resumed.outcome, resumed.written, resumed.present, resumed.rejected) == (
        Outcome.REPLAYED,
        600 - 1 - 3 * BATCH - gated.rows_after,
        gated.rows_after,
        0,
    )
    assert_table_matches(db, expected_rows(values[1:]))
    assert _rejected_reasons(backup) == [f"{path.name} line 2: expected 5 fields, found 1"]


def test_an_interrupted_parallel_replay_keeps_its_place(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    values = sample_values(500)
    path = write_backup(backup, values)
    replayer, made = _gated_replayer(db, fail_at=values[2 * BATCH], later=1, error="interrupt")
    with pytest.raises(KeyboardInterrupt):
        replayer.run([path])
    (gated,) = made
    assert path.exists() and resume_path(path).exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("replay-writer")]

    (done,) = _replayer(db).run([path]).files
    assert done.resumed_after_line == 2 * BATCH + 1
    assert (done.written, done.present) == (500 - 2 * BATCH - gated.rows_after, gated.rows_after)
    assert_table_matches(db, expected_rows(values))


def test_workers_must_be_at_least_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        Replayer(lambda: SqliteSink(tmp_path / "tags.db"), workers=0)


class ReadWatching(WrappedSink):
    """A real SQLite sink whose first batch waits (at most ``timeout`` seconds) until the replay
    has read the chunk after it: the proof that the file is read while the writer writes."""

    def __init__(self, inner: Sink, second_read: threading.Event, timeout: float = 10.0) -> None:
        super().__init__(inner)
        self._second_read = second_read
        self._timeout = timeout
        self.first_waited: bool | None = None
        self.threads: set[str] = set()

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        if self.first_waited is None:
            self.first_waited = self._second_read.wait(self._timeout)
        self.threads.add(threading.current_thread().name)
        return self.inner.write(batch)


def test_one_writer_writes_while_the_next_batch_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "tags.db"
    values = sample_values(4 * BATCH)
    path = write_backup(tmp_path / "backup", values)
    second_read = threading.Event()
    real_chunks = replay_module.chunks

    def counted_chunks(*args: object, **kwargs: object) -> Iterator[Chunk]:
        for number, chunk in enumerate(real_chunks(*args, **kwargs), start=1):  # type: ignore[arg-type]
            if number == 2:
                second_read.set()
            yield chunk

    monkeypatch.setattr(replay_module, "chunks", counted_chunks)
    sink = ReadWatching(SqliteSink(db), second_read)
    (done,) = Replayer(lambda: sink, batch_size=BATCH, workers=1).run([path]).files

    assert sink.first_waited is True, "the second batch was not read while the first was written"
    assert len(sink.threads) == 1 and threading.current_thread().name not in sink.threads
    assert (done.outcome, done.written) == (Outcome.REPLAYED, 4 * BATCH)
    assert_table_matches(db, expected_rows(values))


@pytest.mark.parametrize(
    ("sink", "writer", "expected"),
    [
        ({"type": "sqlite"}, {}, 1),
        ({"type": "sqlite"}, {"workers": 3}, 3),
        ({"type": "postgresql", "dsn": "host=db"}, {}, 4),
        ({"type": "postgresql", "dsn": "host=db"}, {"workers": 2}, 2),
    ],
)
def test_replay_writers_are_the_measured_default_unless_configured(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sink: dict[str, str],
    writer: dict[str, int],
    expected: int,
) -> None:
    write_backup(tmp_path / "backup", sample_values(10))
    config = Config.model_validate(
        {
            "sink": {**sink, "path": str(tmp_path / "tags.db")} if sink["type"] == "sqlite" else sink,
            "writer": writer,
            "backup": {"dir": str(tmp_path / "backup")},
        }
    )
    asked: list[int] = []

    class Recording(Replayer):
        def __init__(self, *args: Any, workers: int = 1, **kwargs: Any) -> None:
            asked.append(workers)
            super().__init__(*args, workers=workers, **kwargs)

        def run(self, files: Sequence[Path], **kwargs: Any) -> ReplayReport:
            return ReplayReport(dry_run=False)  # the count is what is looked at; nothing is written

    monkeypatch.setattr(commands_module, "Replayer", Recording)
    replay_command(config, [], out=io.StringIO())
    assert asked == [expected]
