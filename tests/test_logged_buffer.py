"""The buffer with the log in front: positions agree, overflow and settled batches release, and
recovered values go in first."""

from __future__ import annotations

from collector.buffer import Batch
from collector.logged_buffer import LoggedBuffer
from collector.wal import WriteAheadLog
from tests.wal_support import ManualClock, crash, poll


def _wal(path) -> WriteAheadLog:
    wal = WriteAheadLog(path, segment_bytes=4096, max_bytes=1 << 20, clock=ManualClock())
    wal.open()
    return wal


def test_takes_carry_the_positions_the_log_gave_their_values(tmp_path) -> None:
    wal = _wal(tmp_path)
    buffer = LoggedBuffer(wal, 100, batch_size=25)
    for index in range(6):
        buffer.put_many(poll(index))
    first, second = buffer.take(25), buffer.take(25)
    assert isinstance(first, Batch) and (first.position, second.position) == (0, 25)
    assert first == (poll(0) + poll(1) + poll(2))[:25]
    buffer.settled(second)  # out of order: nothing below 25 is finished yet
    wal.checkpoint()
    assert wal.stats().mark == 0
    buffer.settled(first)
    assert wal.stats().mark == 50
    assert buffer.stats().inserted == wal.admitted == 60


def test_overwritten_values_are_released_as_they_drop(tmp_path) -> None:
    wal = _wal(tmp_path)
    buffer = LoggedBuffer(wal, 30, batch_size=10)
    for index in range(5):  # 50 values into a ring of 30: the oldest 20 are overwritten
        buffer.put_many(poll(index))
    assert buffer.stats().overflow == 20
    assert wal.stats().mark == 20
    rest = buffer.take(30)
    assert rest.position == 20
    buffer.settled(rest)
    assert wal.stats().mark == 50


def test_recovered_values_enter_first_and_keep_their_log_identity(tmp_path) -> None:
    wal = _wal(tmp_path)
    before = LoggedBuffer(wal, 1000)
    for index in range(4):
        before.put_many(poll(index))
    done = before.take(10)
    before.settled(done)
    wal.checkpoint()
    crash(wal)

    again = _wal(tmp_path)
    buffer = LoggedBuffer(again, 1000, batch_size=15)
    assert buffer.feed_recovered() == 30
    buffer.put_many(poll(9))
    batch = buffer.take(1000)
    assert batch == poll(1) + poll(2) + poll(3) + poll(9)
    buffer.settled(batch)
    stats = again.stats()
    assert stats.mark == stats.next_seq == 50 and stats.recovered_values == 30


def test_feeding_waits_for_room_instead_of_overwriting(tmp_path) -> None:
    wal = _wal(tmp_path)
    first = LoggedBuffer(wal, 1000)
    for index in range(5):
        first.put_many(poll(index))
    crash(wal)

    again = _wal(tmp_path)
    sleeps: list[float] = []

    def drain(seconds: float) -> None:  # plays the writers: each wait, one batch leaves
        sleeps.append(seconds)
        buffer.settled(buffer.take(10))

    buffer = LoggedBuffer(again, 20, batch_size=10, sleep=drain)
    assert buffer.feed_recovered() == 50
    assert buffer.stats().overflow == 0
    assert sleeps  # it had to wait


def test_spilled_values_carry_every_run_of_positions_they_came_from(tmp_path) -> None:
    wal = _wal(tmp_path)
    buffer = LoggedBuffer(wal, 40, batch_size=10, spill_level=30)
    for index in range(3):
        buffer.put_many(poll(index))  # 30 values: at the spill level
    taken = buffer.take(10)  # positions 0..9 go to a writer
    for index in range(3, 6):
        buffer.put_many(poll(index))  # the ring passes the spill level: its oldest are spilled
    spilled = buffer.wait_for_spill(0)
    assert spilled and taken.position == 0
    assert spilled.ranges[0][0] == 10  # the spill queue starts after what the writer took
    assert sum(count for _, count in spilled.ranges) == len(spilled)
    buffer.settled(spilled)
    buffer.settled(taken)
    rest = buffer.take(100)
    buffer.settled(rest)
    assert wal.stats().mark == wal.stats().next_seq == 60  # every position released exactly once
