"""The running log: positions, release, the recorded mark, segment deletion, recovery order,
durability levels, the size cap and a directory that fails. Time is a hand-moved clock."""

from __future__ import annotations

import errno
import logging
import os

import pytest

from collector.wal import Durability, WalInUseError, WriteAheadLog
from collector.wal import log as wal_log
from collector.wal.mark import read_mark
from collector.wal.segments import list_segments
from tests.wal_support import ManualClock, crash, feed, poll

SMALL = {"segment_bytes": 4096, "max_bytes": 1 << 20}


def _log(path, clock=None, **options) -> WriteAheadLog:
    return WriteAheadLog(path, clock=clock or ManualClock(), **{**SMALL, **options})


def _fill(wal: WriteAheadLog, polls: range) -> list:
    values = []
    for index in polls:
        batch = poll(index)
        wal.append(batch)
        values.extend(batch)
    return values


def test_unfinished_values_come_back_in_order_and_finished_ones_do_not(tmp_path) -> None:
    wal = _log(tmp_path)
    wal.open()
    values = _fill(wal, range(40))
    wal.release(0, 120)  # polls 0..11 finished
    wal.release(300, 20)  # finished out of order: the mark cannot pass 120 yet
    wal.checkpoint()
    assert wal.stats().mark == 120
    crash(wal)

    again = _log(tmp_path)
    report = again.open()
    assert report.mark == 120
    recovered = feed(again)
    # Everything from the mark on, including the range finished out of order (it will be a counted
    # duplicate): the log cannot know that [300, 320) is safe without the values before it.
    assert recovered == values[120:]
    assert report.pending_values == len(recovered) == again.stats().recovered_values


def test_positions_map_recovered_values_then_new_ones(tmp_path) -> None:
    wal = _log(tmp_path)
    wal.open()
    _fill(wal, range(10))
    wal.release(0, 35)
    wal.checkpoint()
    crash(wal)

    again = _log(tmp_path)
    again.open()
    recovered = feed(again)
    assert len(recovered) == 65
    new = _fill(again, range(10, 13))
    assert again.admitted == 65 + len(new)
    # Release out of order across the boundary between old and new values.
    again.release(65, 30)
    again.release(0, 65)
    again.checkpoint()
    stats = again.stats()
    assert stats.mark == stats.next_seq == 130
    again.close()
    assert list_segments(tmp_path) == []  # everything finished: a graceful stop leaves an empty log
    assert read_mark(tmp_path) == (130, None)


def test_new_values_wait_for_every_recovered_one(tmp_path) -> None:
    wal = _log(tmp_path)
    wal.open()
    _fill(wal, range(3))
    crash(wal)
    again = _log(tmp_path)
    again.open()
    with pytest.raises(RuntimeError, match="recovered values"):
        again.append(poll(99))
    feed(again)
    again.append(poll(99))


def test_segments_go_only_once_the_recorded_mark_covers_them(tmp_path, monkeypatch) -> None:
    clock = ManualClock()
    wal = _log(tmp_path, clock)
    wal.open()
    _fill(wal, range(120))
    segments = list_segments(tmp_path)
    assert len(segments) >= 4
    second_start = segments[1][0]
    wal.release(0, second_start)  # the whole first segment is finished

    # Recording the mark fails: nothing may be deleted (the Vector #25570 ordering).
    def refuse(*_args: object) -> None:
        raise OSError(errno.EIO, "injected")

    monkeypatch.setattr(wal_log, "record_mark", refuse)
    wal.checkpoint()
    assert list_segments(tmp_path)[0][0] == 0
    assert read_mark(tmp_path) == (0, None)


def test_a_crash_between_recording_the_mark_and_deleting_is_finished_at_start(tmp_path, monkeypatch) -> None:
    wal = _log(tmp_path)
    wal.open()
    values = _fill(wal, range(60))
    second_start = list_segments(tmp_path)[1][0]
    wal.release(0, second_start)
    monkeypatch.setattr(type(tmp_path), "unlink", lambda *a, **k: (_ for _ in ()).throw(OSError("dies")))
    wal.checkpoint()  # the mark is recorded, the delete "fails" as if the process died here
    monkeypatch.undo()
    assert read_mark(tmp_path)[0] == second_start
    assert list_segments(tmp_path)[0][0] == 0
    crash(wal)

    again = _log(tmp_path)
    report = again.open()
    assert report.repair.deleted_segments == 1
    assert list_segments(tmp_path)[0][0] == second_start
    assert feed(again) == values[second_start:]


def test_a_mark_recorded_past_the_last_record_starts_new_values_after_it(tmp_path) -> None:
    # With interval durability a power cut can lose appended bytes that the mark already covers.
    wal = _log(tmp_path)
    wal.open()
    _fill(wal, range(5))
    wal.release(0, 50)
    wal.close()
    again = _log(tmp_path)
    again.open()
    assert feed(again) == []
    again.append(poll(7))
    assert again.stats().next_seq == 60


def test_interval_durability_fsyncs_on_the_checkpoint_and_always_on_every_append(tmp_path) -> None:
    interval = _log(tmp_path / "interval")
    interval.open()
    _fill(interval, range(5))
    assert interval.stats().fsyncs == 0
    interval.checkpoint()
    assert interval.stats().fsyncs >= 1
    interval.close()

    always = _log(tmp_path / "always", durability=Durability.ALWAYS)
    always.open()
    before = always.stats().fsyncs
    _fill(always, range(5))
    stats = always.stats()
    assert stats.fsyncs - before >= 5
    assert stats.fsync_buckets[-1] == stats.fsyncs  # every fsync lands in a bucket
    always.close()


def test_a_failing_directory_degrades_to_memory_only_and_recovers(tmp_path, monkeypatch, caplog) -> None:
    clock = ManualClock()
    wal = _log(tmp_path, clock, retry_interval_s=5.0)
    wal.open()
    _fill(wal, range(3))
    real_write = os.write

    def full_disk(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wal_log.os, "write", full_disk)
    with caplog.at_level(logging.CRITICAL, logger="collector.wal"):
        wal.append(poll(3))  # accepted all the same: intake never blocks on the log
        wal.append(poll(4))
    stats = wal.stats()
    assert not stats.writable and stats.unlogged_values == 20 and stats.write_failures == 1
    assert [r.levelno for r in caplog.records].count(logging.CRITICAL) == 1
    assert "memory-only" in caplog.records[0].getMessage()

    clock.advance(1.0)
    wal.checkpoint()
    assert not wal.stats().writable  # not retried before the interval
    monkeypatch.setattr(wal_log.os, "write", real_write)
    clock.advance(5.0)
    wal.checkpoint()
    assert wal.stats().writable
    wal.append(poll(5))
    crash(wal)

    again = _log(tmp_path)
    again.open()
    recovered = feed(again)
    assert recovered == poll(0) + poll(1) + poll(2) + poll(5)  # the unlogged polls are what a crash costs


def test_the_size_cap_logs_nothing_more_until_values_are_released(tmp_path, caplog) -> None:
    clock = ManualClock()
    wal = _log(tmp_path, clock, segment_bytes=4096, max_bytes=8192)
    wal.open()
    with caplog.at_level(logging.ERROR, logger="collector.wal"):
        _fill(wal, range(100))
    stats = wal.stats()
    assert stats.full and stats.unlogged_values > 0 and stats.bytes <= 8192
    assert any("size cap" in r.getMessage() for r in caplog.records)
    wal.release(0, wal.admitted)
    clock.advance(2.0)
    wal.checkpoint()
    wal.checkpoint()
    assert not wal.stats().full
    logged_before = wal.stats().appended_values
    wal.append(poll(41))
    assert wal.stats().appended_values == logged_before + 10


def test_a_second_collector_cannot_share_the_directory(tmp_path) -> None:
    wal = _log(tmp_path)
    wal.open()
    with pytest.raises(WalInUseError, match="in use by another collector"):
        _log(tmp_path).open()
    wal.close()
    _log(tmp_path).open()  # free again once the first has closed


def test_releasing_what_was_never_admitted_is_a_bug_reported_at_once(tmp_path) -> None:
    wal = _log(tmp_path)
    wal.open()
    wal.append(poll(0))
    with pytest.raises(ValueError, match="never admitted"):
        wal.release(5, 10)
    wal.release(0, 10)
    with pytest.raises(ValueError, match="already finished"):
        wal.release(0, 10)


def test_the_log_is_owner_only_whatever_the_umask(tmp_path) -> None:
    previous = os.umask(0o022)  # an embedding program's usual umask: files 0644, directories 0755
    try:
        wal = _log(tmp_path / "wal")
        wal.open()
        _fill(wal, range(5))
        wal.release(0, 20)
        wal.checkpoint()
        crash(wal)
    finally:
        os.umask(previous)
    directory = tmp_path / "wal"
    assert directory.stat().st_mode & 0o777 == 0o700
    files = [path for path in directory.iterdir() if path.is_file()]
    assert files, "the log wrote no file"
    assert {path.name: path.stat().st_mode & 0o777 for path in files} == {path.name: 0o600 for path in files}
