"""The writer against fake databases: batching, retries, circuit, backup, row outcomes, shutdown.

Retry and probe timing run on a hand-moved clock, so nothing here sleeps for the real 1 s, 2 s, 4 s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from collector.circuit import CircuitState
from collector.model import TagValue
from collector.retry import RetryPolicy
from collector.sinks.base import TransientSinkError, WriteResult
from collector.writer import WriterStats
from tests.evidence import read_spool_rows, spool_keys
from tests.fakes import (
    BlockingSink,
    LostAckSink,
    ManualClock,
    MemorySink,
    PermanentlyBrokenSink,
    SwitchableSink,
)
from tests.waiting import wait_until
from tests.writer_rig import WriterRig

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def values(start: int, count: int, name: str = "T") -> list[TagValue]:
    return [
        TagValue(f"{name}{i % 100}", i, T0 + timedelta(seconds=i // 100)) for i in range(start, start + count)
    ]


def balanced(stats: WriterStats, accepted: int) -> bool:
    settled = stats.written + stats.duplicate + stats.rejected + stats.backed_up + stats.lost
    return accepted == settled + stats.buffer_overflow + stats.buffer_size + stats.in_flight


def test_a_backlog_is_written_in_full_batches_back_to_back(writer_rigs):
    sink = MemorySink()
    rig = writer_rigs(sink, batch_size=500)
    rig.buffer.put_many(values(0, 2_000))
    wait_until(lambda: len(sink.rows) == 2_000)
    assert sink.batches == [500, 500, 500, 500]
    assert rig.stats().batches_written == 4


def test_a_partial_batch_is_written_when_the_oldest_value_has_waited_the_interval(writer_rigs):
    sink = MemorySink()
    writer_rigs(sink, batch_size=500, flush_interval_s=0.05).buffer.put_many(values(0, 7))
    wait_until(lambda: len(sink.rows) == 7)
    assert sink.batches == [7]


def test_transient_failure_is_retried_after_1_2_4_seconds_then_backed_up(writer_rigs):
    clock = ManualClock()
    sink = SwitchableSink(MemorySink())
    sink.down.set()
    rig = writer_rigs(sink, clock=clock, workers=1, batch_size=100)
    rig.buffer.put_many(values(0, 100))
    wait_until(lambda: sink.failures == 1)
    for delay, failures in ((1.0, 2), (2.0, 3), (4.0, 4)):
        # The sink counts a failure before the writer reads the clock to schedule the retry: the
        # batch is back in the retry queue only once its due time is set, so move the clock after.
        wait_until(lambda: rig.stats().retry_pending == 100)
        clock.advance(delay - 0.01)
        time.sleep(0.1)
        assert sink.failures == failures - 1, f"retried before {delay} s had passed"
        clock.advance(0.01)
        wait_until(lambda failures=failures: sink.failures == failures)
    wait_until(lambda: rig.stats().backed_up == 100)
    stats = rig.stats()
    assert (stats.retries, stats.attempts_failed, stats.retry_pending) == (3, 4, 0)
    assert stats.circuit.state is CircuitState.OPEN
    assert "retries exhausted" in stats.circuit.reason
    assert len(rig.backup_rows()) == 100


def test_the_buffer_keeps_draining_while_a_batch_waits_for_its_retry(writer_rigs):
    clock = ManualClock()
    sink = SwitchableSink(MemorySink())
    sink.down.set()
    rig = writer_rigs(sink, clock=clock, workers=1, batch_size=100)
    rig.buffer.put_many(values(0, 100))
    wait_until(lambda: rig.stats().retry_pending == 100)
    rig.buffer.put_many(values(100, 300))
    wait_until(lambda: rig.stats().retry_pending == 400)
    assert len(rig.buffer) == 0
    sink.down.clear()  # the database comes back before the retries run out
    clock.advance(1.0)
    wait_until(lambda: len(sink.inner.rows) == 400)
    stats = rig.stats()
    assert (stats.written, stats.backed_up, stats.in_flight) == (400, 0, 0)
    assert stats.circuit.state is CircuitState.CLOSED


def test_open_circuit_sends_batches_to_backup_and_a_probe_closes_it(writer_rigs):
    clock = ManualClock()
    sink = SwitchableSink(MemorySink())
    rig = writer_rigs(sink, clock=clock, workers=2, batch_size=100, retry=RetryPolicy.of(0, []))
    sink.down.set()
    rig.buffer.put_many(values(0, 100))
    wait_until(lambda: rig.stats().circuit.state is CircuitState.OPEN)
    calls = sink.calls
    rig.buffer.put_many(values(100, 300))
    wait_until(lambda: rig.stats().backed_up == 400)
    assert sink.calls == calls, "a batch was sent to a database known to be down"
    first_file = rig.backup.stats().current_file
    clock.advance(5.0)  # probe due, database still down
    wait_until(lambda: sink.pings == 1)
    assert rig.stats().circuit.state is CircuitState.OPEN
    sink.down.clear()
    clock.advance(5.0)
    wait_until(lambda: rig.stats().circuit.state is CircuitState.CLOSED)
    assert rig.backup.stats().current_file is None  # the outage's file is closed, ready to replay
    rig.buffer.put_many(values(400, 100))
    wait_until(lambda: len(sink.inner.rows) == 100)
    assert spool_keys(rig.backup_dirs).total() == 400
    assert first_file is not None


def test_permanent_error_skips_retries_and_recovers_when_fixed(writer_rigs):
    clock = ManualClock()
    sink = PermanentlyBrokenSink()
    rig = writer_rigs(sink, clock=clock, batch_size=100)
    rig.buffer.put_many(values(0, 100))
    wait_until(lambda: rig.stats().backed_up == 100)
    stats = rig.stats()
    assert stats.retries == 0
    assert stats.circuit.permanent and "NO_TABLE" in stats.circuit.reason
    sink.fixed.set()
    clock.advance(5.0)
    wait_until(lambda: rig.stats().circuit.state is CircuitState.CLOSED)
    rig.buffer.put_many(values(100, 100))
    wait_until(lambda: len(sink.rows) == 100)


def test_lost_acknowledgement_lands_as_duplicates_not_double_rows(writer_rigs):
    clock = ManualClock()
    memory = MemorySink()
    rig = writer_rigs(LostAckSink(memory, times=1), clock=clock, workers=1, batch_size=100)
    rig.buffer.put_many(values(0, 100))
    wait_until(lambda: rig.stats().retry_pending == 100)
    clock.advance(1.0)
    wait_until(lambda: rig.stats().duplicate == 100)
    stats = rig.stats()
    assert (stats.written, stats.duplicate, stats.backed_up, stats.in_flight) == (0, 100, 0, 0)
    assert len(memory.rows) == 100


def test_bad_rows_go_to_the_rejected_file_and_the_good_rows_are_kept(writer_rigs):
    sink = MemorySink(
        reject=lambda v: "value above 1000" if isinstance(v.value, int) and v.value > 1000 else None
    )
    rig = writer_rigs(sink, batch_size=10)
    batch = [*values(0, 8), TagValue("X", 5000, T0), TagValue("Y", 7000, T0)]
    rig.buffer.put_many(batch)
    wait_until(lambda: rig.stats().rejected == 2)
    rows = read_spool_rows(rig.backup_dirs, "rejected")
    assert [(r["tag_name"], r["tag_value"], r["error_code"], r["reason"]) for r in rows] == [
        ("X", "5000", "CHECK", "value above 1000"),
        ("Y", "7000", "CHECK", "value above 1000"),
    ]
    assert len(sink.rows) == 8
    assert rig.stats().written == 8


def test_when_no_directory_can_take_a_backup_the_loss_is_counted_exactly(writer_rigs, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    sink = SwitchableSink(MemorySink())
    sink.down.set()
    rig = writer_rigs(
        sink,
        batch_size=50,
        retry=RetryPolicy.of(0, []),
        backup_dir=blocker / "backup",
        fallback_dir=blocker / "fallback",
    )
    rig.buffer.put_many(values(0, 230))
    wait_until(lambda: rig.stats().lost == 230)
    stats = rig.stats()
    assert (stats.backed_up, stats.written, stats.in_flight) == (0, 0, 0)
    assert rig.backup.stats().failures >= 2
    assert all(t.is_alive() for t in rig.writer.threads), "the writer must keep running"
    # The database comes back: writing resumes although the disks are still broken.
    sink.down.clear()
    rig.writer.circuit.probe_done(True)
    rig.buffer.put_many(values(230, 50))
    wait_until(lambda: len(sink.inner.rows) == 50)


def test_a_sink_that_misreports_its_rows_gets_the_batch_retried(writer_rigs):
    class Miscounting(MemorySink):
        def __init__(self) -> None:
            super().__init__()
            self.fooled = False

        def write(self, batch: Sequence[TagValue]) -> WriteResult:
            result = super().write(batch)
            if not self.fooled:
                self.fooled = True
                result.written -= 1
            return result

    clock = ManualClock()
    sink = Miscounting()
    rig = writer_rigs(sink, clock=clock, workers=1, batch_size=10)
    rig.buffer.put_many(values(0, 10))
    wait_until(lambda: rig.stats().retry_pending == 10)
    assert "SINK_MISCOUNT" in rig.stats().last_error
    clock.advance(1.0)
    wait_until(lambda: rig.stats().duplicate == 10)
    assert len(sink.rows) == 10


def test_an_unexpected_exception_is_retried_like_a_transient_error(writer_rigs):
    class Buggy(MemorySink):
        calls = 0

        def write(self, batch: Sequence[TagValue]) -> WriteResult:
            Buggy.calls += 1
            if Buggy.calls == 1:
                raise RuntimeError("driver bug")
            return super().write(batch)

    clock = ManualClock()
    sink = Buggy()
    rig = writer_rigs(sink, clock=clock, workers=1, batch_size=10)
    rig.buffer.put_many(values(0, 10))
    wait_until(lambda: rig.stats().retry_pending == 10)
    clock.advance(1.0)
    wait_until(lambda: len(sink.rows) == 10)
    assert "RuntimeError: driver bug" in rig.stats().last_error


def test_spill_guard_saves_the_oldest_to_backup_when_the_writers_are_stuck(writer_rigs):
    sink = BlockingSink()
    # 500 values of headroom above the spill level: 25 ms at the 20 000 values/s produced below.
    rig = writer_rigs(sink, capacity=1_000, batch_size=100, workers=1, spill_level=500)
    rig.buffer.put_many(values(0, 100))
    wait_until(sink.entered.is_set)  # the only writer now hangs in the database
    produced = 100
    for start in range(100, 3_000, 100):
        rig.buffer.put_many(values(start, 100))
        produced += 100
        time.sleep(0.005)
    # The writers keep the newest 500; everything older than that, and not in the stuck batch,
    # is in the backup file.
    wait_until(lambda: rig.stats().backed_up == produced - 100 - 500)
    stats = rig.stats()
    assert stats.buffer_overflow == 0 and stats.buffer_size == 500
    assert stats.spilled == stats.backed_up == 2_400
    assert balanced(stats, produced)
    spilled = [int(r["tag_value"]) for r in rig.backup_rows()]
    assert spilled == list(range(100, 2_500)), "the oldest values are spilled, in order"


def test_a_hanging_backup_disk_never_holds_the_producer(writer_rigs):
    """The producer encodes its own excess; the spill guard writes it. While the disk hangs the
    producer's puts still return at once: a ring's worth waits for the guard, the spill queue fills,
    then the ring overwrites and counts, and every value is accounted for when the disk is back."""
    sink = BlockingSink()
    rig = writer_rigs(sink, capacity=1_000, batch_size=100, workers=1, spill_level=500)
    disk = threading.Event()
    writing = threading.Event()
    append = rig.backup.append

    def hanging_append(rows):  # type: ignore[no-untyped-def]
        writing.set()
        disk.wait()
        return append(rows)

    rig.backup.append = hanging_append  # type: ignore[method-assign]
    rig.buffer.put_many(values(0, 100))
    wait_until(sink.entered.is_set)  # the only writer hangs in the database
    produced = 6_000

    def produce() -> None:
        for start in range(100, produced, 100):
            rig.buffer.put_many(values(start, 100))

    producer = threading.Thread(target=produce, name="plc-poller")
    producer.start()
    producer.join(10.0)
    hung = producer.is_alive()
    if hung:
        disk.set()  # let the held producer go before failing
    assert not hung, "a put waited for the backup disk"
    assert writing.is_set()
    stats = rig.stats()
    assert stats.backed_up == 0 and stats.buffer_overflow > 0, "the ring overwrote once all was full"
    assert balanced(stats, produced)
    disk.set()
    sink.release.set()
    wait_until(lambda: rig.stats().in_flight == 0 and rig.stats().buffer_size == 0)
    stats = rig.stats()
    assert balanced(stats, produced)
    assert stats.written + stats.backed_up + stats.buffer_overflow == produced
    assert stats.backed_up == stats.spilled == len(rig.backup_rows())


def test_overflow_at_ten_times_the_drain_rate_drops_the_oldest_and_counts_exactly(writer_rigs):
    class Slow(MemorySink):
        def write(self, batch: Sequence[TagValue]) -> WriteResult:
            time.sleep(0.01)
            return super().write(batch)

    sink = Slow()
    rig = writer_rigs(sink, capacity=1_000, batch_size=100, workers=1)
    produced = 0
    peak = 0
    for start in range(0, 40_000, 200):  # about 10x what one 10 ms-per-batch writer drains
        rig.buffer.put_many(values(start, 200))
        produced += 200
        peak = max(peak, len(rig.buffer))
        time.sleep(0.002)
    assert peak == 1_000
    remaining = rig.buffer.take(1_000)
    stats = rig.stats()
    assert stats.buffer_overflow > 0
    in_sink_or_flight = stats.buffer_removed - len(remaining)
    assert stats.buffer_overflow == produced - in_sink_or_flight - len(remaining) - stats.buffer_size
    assert [v.value for v in remaining] == list(range(produced - len(remaining), produced)), "the newest stay"
    # The values this test took itself count as in flight: they left the buffer and went nowhere.
    wait_until(lambda: rig.stats().in_flight == len(remaining))
    assert len(sink.rows) == rig.stats().written == in_sink_or_flight


def test_stop_drains_the_buffer_then_backs_up_whatever_the_deadline_leaves(tmp_path):
    sink = BlockingSink()
    rig = WriterRig(tmp_path, sink, capacity=1_000, batch_size=100, workers=2)
    rig.writer.start()
    rig.buffer.put_many(values(0, 1_000))
    wait_until(sink.entered.is_set)
    pending = rig.writer.stop(timeout_s=0.3, grace_s=0.3)
    assert pending == 1_000
    # Two writers are stuck with a batch each; everything else went to backup at the deadline.
    stats = rig.stats()
    assert stats.backed_up == 800
    assert stats.in_flight == 200
    sink.release.set()
    for thread in rig.writer.threads:
        thread.join(5)
    stats = rig.stats()
    assert stats.in_flight == 0
    assert stats.written + stats.backed_up == 1_000
    assert spool_keys(rig.backup_dirs).total() == stats.backed_up


def test_stop_during_an_outage_puts_every_pending_value_in_backup(writer_rigs):
    clock = ManualClock()
    sink = SwitchableSink(MemorySink())
    sink.down.set()
    rig = writer_rigs(sink, clock=clock, workers=2, batch_size=100)
    rig.buffer.put_many(values(0, 600))
    wait_until(lambda: rig.stats().retry_pending == 600)
    rig.buffer.put_many(values(600, 50))
    rig.writer.stop(timeout_s=1.0)
    stats = rig.stats()
    assert (stats.backed_up, stats.in_flight, stats.buffer_size) == (650, 0, 0)
    assert spool_keys(rig.backup_dirs).total() == 650


def test_every_snapshot_balances_while_values_flow_and_fail(writer_rigs):
    sink = SwitchableSink(MemorySink())
    rig = writer_rigs(sink, capacity=2_000, batch_size=50, workers=3, retry=RetryPolicy.of(1, [0.01]))
    produced = 0
    stop = threading.Event()
    unbalanced: list[WriterStats] = []

    def sample() -> None:
        while not stop.is_set():
            stats = rig.stats()
            if not balanced(stats, stats.buffer_inserted):
                unbalanced.append(stats)

    sampler = threading.Thread(target=sample)
    sampler.start()
    for round_ in range(40):
        if round_ % 10 == 5:
            sink.down.set()
        elif round_ % 10 == 8:
            sink.down.clear()
            rig.writer.circuit.probe_done(True)
        rig.buffer.put_many(values(produced, 250))
        produced += 250
        time.sleep(0.01)
    sink.down.clear()
    rig.writer.stop(timeout_s=2.0)
    stop.set()
    sampler.join()
    assert unbalanced == []
    final = rig.stats()
    assert final.buffer_inserted == produced
    assert final.written + final.duplicate + final.backed_up + final.buffer_overflow == produced
    assert len(sink.inner.rows) == final.written
    assert spool_keys(rig.backup_dirs).total() == final.backed_up


def test_transient_errors_classify_as_retryable():
    assert TransientSinkError("x").transient


def test_retry_and_failure_lines_name_the_batch_and_the_worker(writer_rigs, caplog):
    clock = ManualClock()
    sink = SwitchableSink(MemorySink())
    sink.down.set()
    with caplog.at_level(logging.DEBUG, logger="collector"):
        rig = writer_rigs(sink, clock=clock, workers=2, batch_size=100, retry=RetryPolicy.of(1, [1.0]))
        rig.buffer.put_many(values(0, 100))
        wait_until(lambda: rig.stats().retry_pending == 100)
        rig.buffer.put_many(values(100, 100))
        wait_until(lambda: rig.stats().retry_pending == 200)
        clock.advance(1.0)
        wait_until(lambda: rig.stats().backed_up == 200)
        # The counter moves before the writer logs the line that says so: wait for both lines.
        wait_until(
            lambda: sum(getattr(r, "collector_event", "") == "batch_backed_up" for r in caplog.records) == 2
        )
    lines = [
        (r.collector_event, r.collector_fields)  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "collector_event", "") in ("write_failed", "write_retry", "batch_backed_up")
    ]
    by_batch: dict[object, list[str]] = {}
    for event, fields in lines:
        assert str(fields["worker"]).startswith("writer-"), fields
        by_batch.setdefault(fields["batch"], []).append(event)
    # Each batch has its own story: the first fails, is retried, fails again, opens the circuit and
    # is backed up; the second, still waiting for its retry then, goes straight to backup.
    assert by_batch == {
        1: ["write_failed", "write_retry", "write_failed", "batch_backed_up"],
        2: ["write_failed", "batch_backed_up"],
    }
