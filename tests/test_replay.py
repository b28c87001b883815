"""Replaying backup files into a real SQLite database with the engine the command uses."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.backup import CsvSpool
from collector.model import TagValue
from collector.recovery.files import backup_files, open_locked, resume_path
from collector.recovery.replay import ExitCode, FileReport, Outcome, Replayer
from collector.retry import RetryPolicy
from collector.sinks.base import KeyLookup, PermanentSinkError, Sink, TransientSinkError, WriteResult
from collector.sinks.sqlite import SqliteKeyLookup, SqliteSink, ddl
from collector.spool_format import BACKUP_HEADER, REJECTED_HEADER, backup_rows
from tests.fakes import WrappedSink
from tests.recovery_support import (
    assert_table_matches,
    expected_rows,
    sample_values,
    table_rows,
    write_backup,
)


def _replayer(
    db: Path,
    *,
    wrap: type[FailingSink] | None = None,
    sleeps: list[float] | None = None,
    lookup: bool = True,
    batch_size: int = 100,
    **wrap_args: object,
) -> Replayer:
    def make_sink() -> Sink:
        sink: Sink = SqliteSink(db)
        return wrap(sink, **wrap_args) if wrap is not None else sink  # type: ignore[arg-type]

    def make_lookup() -> KeyLookup | None:
        return SqliteKeyLookup(db) if lookup else None

    return Replayer(
        make_sink,
        lookup_factory=make_lookup,
        batch_size=batch_size,
        retry=RetryPolicy(3, (1.0, 2.0, 4.0)),
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
    )


class FailingSink(WrappedSink):
    """A real SQLite sink that fails from its ``fail_from``-th write on, transiently or not."""

    def __init__(
        self, inner: Sink, *, fail_from: int, permanent: bool = False, miscount: bool = False
    ) -> None:
        super().__init__(inner)
        self.writes = 0
        self._fail_from = fail_from
        self._permanent = permanent
        self._miscount = miscount

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        self.writes += 1
        if self.writes < self._fail_from:
            return self.inner.write(batch)
        if self._miscount:
            result = self.inner.write(batch)
            result.duplicates += 1  # accounts for a row the batch does not have
            return result
        if self._permanent:
            raise PermanentSinkError("no such table: TAG_DATA", code="SQLITE_ERROR")
        raise TransientSinkError("database is locked", code="SQLITE_BUSY")


def test_a_replayed_file_is_in_the_database_and_moved_aside(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    values = sample_values(1050)
    path = write_backup(backup, values)
    report = _replayer(db).run(backup_files([backup]))
    (done,) = report.files
    assert (done.outcome, done.read, done.written, done.present, done.rejected) == (
        Outcome.REPLAYED,
        1050,
        1050,
        0,
        0,
    )
    assert done.moved_to == backup / "replayed" / path.name
    assert not path.exists() and done.moved_to.exists()
    assert (done.first, done.last) == (values[0].timestamp, values[-1].timestamp)
    assert report.exit_code is ExitCode.OK
    assert_table_matches(db, expected_rows(values))


def test_replaying_again_adds_nothing(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    values = sample_values(300)
    write_backup(backup, values)
    _replayer(db).run(backup_files([backup]))
    before = table_rows(db)

    again = _replayer(db).run(backup_files([backup]))
    assert again.files == [] and again.exit_code is ExitCode.OK
    # Even naming the replayed file explicitly only finds its rows already present.
    (moved,) = (backup / "replayed").iterdir()
    (done,) = _replayer(db).run([moved]).files
    assert (done.outcome, done.written, done.present) == (Outcome.REPLAYED, 0, 300)
    assert done.moved_to == moved and moved.exists()
    assert table_rows(db) == before


def test_rows_already_in_the_database_are_counted_not_doubled(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    values = sample_values(400)
    write_backup(backup, values)
    sink = SqliteSink(db)
    sink.write(values[::3])  # the part a lost acknowledgement had already committed
    sink.close()
    (done,) = _replayer(db).run(backup_files([backup])).files
    already = len(values[::3])
    assert (done.written, done.present, done.rejected) == (400 - already, already, 0)
    assert_table_matches(db, expected_rows(values))


def test_damaged_lines_go_to_a_rejected_file_with_their_line_numbers(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    values = sample_values(20)
    path = write_backup(backup, values)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[3] = "L1.T002,RUNNING,2026-03-01T08:00\n"  # cut short (line 4)
    lines[7] = lines[7].replace("GOOD", "G00D")  # line 8
    lines.append("L1.T999,1,2026-03-01T09:00:00.000000+00:00,GOOD,x,extra\n")  # line 22
    path.write_text("".join(lines), encoding="utf-8")

    (done,) = _replayer(db).run([path]).files
    assert (done.outcome, done.read, done.written, done.rejected, done.damaged) == (
        Outcome.REPLAYED,
        21,
        18,
        3,
        3,
    )
    good = [v for i, v in enumerate(values) if i + 2 not in (4, 8)]
    assert_table_matches(db, expected_rows(good))
    (rejected_file,) = done.rejected_files
    with open(rejected_file, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == REJECTED_HEADER
    assert [(row[5], row[6]) for row in rows[1:]] == [
        ("DAMAGED", f"{path.name} line 4: expected 5 fields, found 3"),
        ("DAMAGED", f"{path.name} line 8: quality must be GOOD or BAD, got 'G00D'"),
        ("DAMAGED", f"{path.name} line 22: expected 5 fields, found 6; fields after the fifth: ['extra']"),
    ]
    assert rows[1][:3] == ["L1.T002", "RUNNING", "2026-03-01T08:00"]


def test_rows_the_database_refuses_are_rejected_with_its_reason(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    # A table whose text column is narrower than the collector's own: long texts are refused.
    with sqlite3.connect(db) as conn:
        conn.executescript(ddl().replace("<= 4000", "<= 5"))
    values = sample_values(50)
    path = write_backup(backup, values)
    report = _replayer(db).run([path])
    (done,) = report.files
    assert report.exit_code is ExitCode.REJECTED
    long_texts = [i for i, v in enumerate(values) if isinstance(v.value, str) and len(v.value) > 5]
    assert long_texts and (done.written, done.rejected, done.damaged) == (
        50 - len(long_texts),
        len(long_texts),
        0,
    )
    with open(done.rejected_files[0], encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    assert [row[6].split(":")[0] for row in rows] == [f"{path.name} line {i + 2}" for i in long_texts]
    assert {row[5] for row in rows} == {"SQLITE_CONSTRAINT_CHECK"}
    assert done.outcome is Outcome.REPLAYED


def test_a_file_the_service_is_still_writing_is_skipped_until_it_is_closed(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    values = sample_values(100)
    spool = CsvSpool(backup)  # the service's spool, mid-outage: it holds the file's lock
    path = spool.append(backup_rows(values, datetime.now(UTC)))
    try:
        report = _replayer(db).run(backup_files([backup]))
        (done,) = report.files
        assert done.outcome is Outcome.IN_USE and report.exit_code is ExitCode.INCOMPLETE
        assert path.exists() and table_rows(db) == {}
        # The spool can still append while the replay looks at its directory.
        spool.append(backup_rows(values[:1], datetime.now(UTC)))
    finally:
        spool.close()
    (done,) = _replayer(db).run(backup_files([backup])).files
    assert (done.outcome, done.written, done.present) == (Outcome.REPLAYED, 100, 1)


def test_an_empty_file_is_left_for_the_service_that_just_created_it(tmp_path: Path) -> None:
    path = tmp_path / "backup_20260301_080000.csv"
    path.touch()
    (done,) = _replayer(tmp_path / "tags.db").run([path]).files
    assert done.outcome is Outcome.IN_USE and path.exists()


def test_a_file_that_is_not_a_backup_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("time,tag,value\n1,2,3\n", encoding="utf-8")
    report = _replayer(tmp_path / "tags.db").run([path])
    assert report.files[0].outcome is Outcome.NOT_BACKUP
    assert report.exit_code is ExitCode.INCOMPLETE
    assert path.read_text(encoding="utf-8") == "time,tag,value\n1,2,3\n"


def test_dry_run_counts_rows_already_present_and_writes_nothing(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    values = sample_values(250)
    path = write_backup(backup, [*values, values[5]])  # one key twice in the file
    sink = SqliteSink(db)
    sink.write(values[:90])
    sink.close()
    db_bytes = db.read_bytes()
    before = path.stat()

    replayer = _replayer(db)
    report = replayer.run([path], dry_run=True)
    (done,) = report.files
    assert (done.outcome, done.read, done.written, done.present, done.damaged) == (
        Outcome.CHECKED,
        251,
        160,
        91,
        0,
    )
    assert report.exit_code is ExitCode.OK
    assert db.read_bytes() == db_bytes and path.stat() == before and done.moved_to is None
    assert list(backup.iterdir()) == [path]  # no rejected file, no replayed/ directory

    # The real replay then does exactly what the dry run said, and a dry run after it finds
    # every row present.
    (real,) = replayer.run([path]).files
    assert (real.written, real.present) == (done.written, done.present)
    assert real.moved_to is not None
    (after,) = replayer.run([real.moved_to], dry_run=True).files
    assert (after.written, after.present) == (0, 251)


def test_dry_run_never_creates_the_database(tmp_path: Path) -> None:
    db, backup = tmp_path / "data" / "tags.db", tmp_path / "backup"
    write_backup(backup, sample_values(10))
    (done,) = _replayer(db).run(backup_files([backup]), dry_run=True).files
    assert (done.written, done.present) == (10, 0)
    assert not db.parent.exists()


def test_dry_run_says_when_the_database_cannot_check_keys(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    write_backup(backup, sample_values(10))
    report = _replayer(tmp_path / "tags.db", lookup=False).run(backup_files([backup]), dry_run=True)
    (done,) = report.files
    assert (done.outcome, done.written, done.present) == (Outcome.CHECKED, 10, None)


def test_a_database_that_fails_part_way_stops_the_run_and_the_next_run_resumes(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    values = sample_values(500)
    first = write_backup(backup, values)
    second = backup / "backup_29990101_000000.csv"
    second.write_bytes(first.read_bytes())
    # A damaged line in the first batch: it must be reported once, not again on the resumed run.
    text = first.read_text(encoding="utf-8").splitlines(keepends=True)
    text[2] = "damaged\n"
    first.write_text("".join(text), encoding="utf-8")

    sleeps: list[float] = []
    report = _replayer(db, wrap=FailingSink, fail_from=3, sleeps=sleeps).run(backup_files([backup]))
    stopped, not_tried = report.files
    assert (stopped.outcome, not_tried.outcome) == (Outcome.DATABASE, Outcome.NOT_ATTEMPTED)
    assert report.exit_code is ExitCode.DATABASE
    assert sleeps == [1.0, 2.0, 4.0]  # the writer's schedule, then it gives up
    assert (stopped.written, stopped.rejected) == (200, 1)  # two batches of 100 settled
    assert first.exists() and resume_path(first).exists() and len(table_rows(db)) == 200

    report = _replayer(db).run(backup_files([backup]))
    resumed, other = report.files
    assert resumed.resumed_after_line == stopped.rejected + stopped.written + 1
    assert (resumed.outcome, resumed.written, resumed.present, resumed.rejected) == (
        Outcome.REPLAYED,
        299,
        0,
        0,
    )
    assert not resume_path(first).exists() and not first.exists()
    assert (other.outcome, other.written, other.present) == (Outcome.REPLAYED, 1, 499)
    assert_table_matches(db, expected_rows(values))
    rejected = [p for p in backup.iterdir() if p.name.startswith("rejected_")]
    assert len(rejected) == 1 and len(rejected[0].read_text(encoding="utf-8").splitlines()) == 2


def test_a_permanent_error_stops_at_once(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    path = write_backup(backup, sample_values(50))
    sleeps: list[float] = []
    report = _replayer(db, wrap=FailingSink, fail_from=1, permanent=True, sleeps=sleeps).run([path])
    assert report.files[0].outcome is Outcome.DATABASE and sleeps == []
    assert "no such table" in report.files[0].detail
    assert path.exists() and not resume_path(path).exists()


def test_a_sink_that_miscounts_is_not_trusted(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    path = write_backup(backup, sample_values(50))
    report = _replayer(db, wrap=FailingSink, fail_from=1, miscount=True).run([path])
    assert report.files[0].outcome is Outcome.DATABASE
    assert "SINK_MISCOUNT" in report.files[0].detail and path.exists()


def test_an_interrupted_replay_keeps_its_place(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    values = sample_values(300)
    path = write_backup(backup, values)
    seen: list[FileReport] = []

    class Interrupting(FailingSink):
        def write(self, batch: Sequence[TagValue]) -> WriteResult:
            if self.writes == 2:
                raise KeyboardInterrupt
            return super().write(batch)

    with pytest.raises(KeyboardInterrupt):
        _replayer(db, wrap=Interrupting, fail_from=99).run([path], on_file=seen.append)
    assert seen == [] and path.exists() and resume_path(path).exists()
    (done,) = _replayer(db).run([path]).files
    assert (done.resumed_after_line, done.written, done.present) == (201, 100, 0)
    assert_table_matches(db, expected_rows(values))


def test_directories_give_their_backup_files_oldest_first_and_never_rejected_ones(tmp_path: Path) -> None:
    for name in ("backup_20260302_000000.csv", "backup_20260301_000000_1.csv", "backup_20260301_000000.csv"):
        (tmp_path / name).write_text(",".join(BACKUP_HEADER) + "\n", encoding="utf-8")
    (tmp_path / "rejected_20260301_000000.csv").write_text("x\n", encoding="utf-8")
    (tmp_path / "notes.csv").write_text("x\n", encoding="utf-8")
    named = tmp_path / "rejected_20260301_000000.csv"
    assert [p.name for p in backup_files([tmp_path, named, tmp_path / "backup_20260302_000000.csv"])] == [
        "backup_20260301_000000.csv",
        "backup_20260301_000000_1.csv",
        "backup_20260302_000000.csv",
        "rejected_20260301_000000.csv",
    ]


def test_a_file_another_replay_holds_is_skipped_not_loaded_twice(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    path = write_backup(backup, sample_values(60))
    with open_locked(path, exclusive=True):  # a replay in another terminal, mid-file
        (done,) = _replayer(db).run(backup_files([backup])).files
        assert done.outcome is Outcome.IN_USE and table_rows(db) == {}
        (checked,) = _replayer(db).run([path], dry_run=True).files
        assert checked.outcome is Outcome.IN_USE


def _locked_database(db: Path) -> sqlite3.Connection:
    """The table exists and another connection holds the write lock (a service mid-transaction, a
    sqlite3 shell left in BEGIN EXCLUSIVE)."""
    sink = SqliteSink(db)
    sink.ping()
    sink.close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_database_locked_as_replay_opens_it_is_waited_for_on_the_writers_schedule(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    path = write_backup(backup, sample_values(50))
    holder = _locked_database(db)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            holder.execute("COMMIT")  # the lock is released during the second wait

    replayer = Replayer(
        lambda: SqliteSink(db, busy_timeout_s=0.01), retry=RetryPolicy(3, (1.0, 2.0, 4.0)), sleep=sleep
    )
    report = replayer.run([path])
    holder.close()
    assert sleeps == [1.0, 2.0]
    assert (report.files[0].outcome, report.files[0].written) == (Outcome.REPLAYED, 50)
    assert report.exit_code is ExitCode.OK and len(table_rows(db)) == 50


def test_a_database_that_stays_locked_fails_after_the_last_retry(tmp_path: Path) -> None:
    db, backup = tmp_path / "tags.db", tmp_path / "backup"
    path = write_backup(backup, sample_values(50))
    holder = _locked_database(db)
    sleeps: list[float] = []
    replayer = Replayer(
        lambda: SqliteSink(db, busy_timeout_s=0.01),
        retry=RetryPolicy(3, (1.0, 2.0, 4.0)),
        sleep=sleeps.append,
    )
    try:
        report = replayer.run([path])
    finally:
        holder.close()
    assert sleeps == [1.0, 2.0, 4.0]
    assert report.exit_code is ExitCode.DATABASE and "locked" in report.files[0].detail
    assert path.exists() and not resume_path(path).exists()


def test_a_dry_run_waits_for_a_database_that_is_briefly_unavailable(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    path = write_backup(backup, sample_values(20))
    calls: list[int] = []

    def lookup() -> KeyLookup | None:
        calls.append(1)
        if len(calls) == 1:
            raise TransientSinkError("connection refused", code="08001")
        return None

    sleeps: list[float] = []
    replayer = Replayer(lambda: SqliteSink(tmp_path / "tags.db"), lookup_factory=lookup, sleep=sleeps.append)
    report = replayer.run([path], dry_run=True)
    assert sleeps == [1.0] and report.files[0].outcome is Outcome.CHECKED
