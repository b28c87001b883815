import queue
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from collector.backup import CsvSpool
from collector.buffer import BufferClosedError, TagBuffer
from collector.model import InvalidValue, PollingData, TagValue
from collector.sources.intake import Intake, QueueSource
from collector.sources.invalid import RejectedReadings
from collector.sources.simulator import Simulator, split_tags, tag_name
from collector.spool_format import SpoolKind
from tests.evidence import read_ledger, read_spool_rows


def drain(q: queue.Queue) -> list[PollingData]:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items


def test_simulator_puts_one_poll_per_group_per_cycle_and_ledgers_every_value(tmp_path):
    q: queue.Queue = queue.Queue()
    ledger = tmp_path / "ledger.csv"
    sim = Simulator(q, groups=4, tags_per_group=25, interval_s=0.02, cycles=3, ledger=ledger, seed=7)
    assert sim.rate == pytest.approx(100 / 0.02)
    sim.start()
    assert sim.wait(10)
    sim.stop()
    polls = drain(q)
    assert [p.group_name for p in polls] == ["group01", "group02", "group03", "group04"] * 3
    assert all(len(p) == 25 for p in polls)
    assert sim.generated == 300
    rows = read_ledger(ledger)
    assert len(rows) == 300
    for poll in polls:
        for name, value in poll.values.items():
            key = (name, poll.timestamp)
            assert rows[key]["quality"] == "GOOD"
            assert rows[key]["tag_value"] == ("1" if value is True else "0" if value is False else str(value))


def test_simulator_mixes_value_kinds_and_bad_readings_reproducibly():
    def one_poll(seed: int) -> PollingData:
        sim = Simulator(
            queue.Queue(),
            groups=1,
            tags_per_group=200,
            bad_ratio=0.25,
            seed=seed,
            now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        )
        return sim.poll(0, 5)

    a, b, c = one_poll(1), one_poll(1), one_poll(2)
    assert a == b
    assert a != c
    kinds = {type(v) for v in a.values.values()}
    assert kinds == {float, str, bool}
    assert 20 <= len(a.errors) <= 80  # about a quarter of 200 fail


def test_tag_counts_spread_over_groups():
    assert split_tags(3491, 10) == [350] * 1 + [349] * 9
    assert sum(split_tags(3491, 7)) == 3491
    assert tag_name(0, 0) == "G01.T0001"


class Collected:
    def __init__(self) -> None:
        self.items: list[InvalidValue] = []

    def __call__(self, items) -> int:
        self.items.extend(items)
        return 0


def test_intake_converts_polls_keeps_collection_time_and_marks_read_errors_bad():
    buffer = TagBuffer(100)
    rejected = Collected()
    intake = Intake(buffer, rejected)
    korea = timezone(timedelta(hours=9))
    stamp = datetime(2026, 5, 1, 9, 30, 0, 250000, tzinfo=korea)
    intake.submit(PollingData("g", stamp, {"A": 1.5, "B": "RUN"}, {"C": "timeout"}))
    got = buffer.take(10)
    assert [(v.tag_name, v.value, v.quality) for v in got] == [
        ("A", 1.5, "GOOD"),
        ("B", "RUN", "GOOD"),
        ("C", None, "BAD"),
    ]
    assert all(v.timestamp == stamp and v.timestamp.tzinfo is UTC for v in got)
    assert rejected.items == []


def test_intake_rejects_invalid_readings_with_reasons_and_keeps_the_rest():
    buffer = TagBuffer(100)
    rejected = Collected()
    intake = Intake(buffer, rejected)
    now = datetime.now(UTC)
    intake.submit(PollingData("g", now, {"": 1, "ok": 2, "x" * 101: 3, "list": [1], 7: 4}))  # type: ignore[dict-item]
    intake.submit(PollingData("g", "not a time", {"a": 1, "b": 2}))  # type: ignore[arg-type]
    intake.submit_values([TagValue("q", 1, now, "UNCERTAIN"), TagValue("fine", 2, now)])
    assert sorted(v.tag_name for v in buffer.take(10)) == ["fine", "ok"]
    reasons = [item.reason for item in rejected.items]
    assert len(reasons) == 7
    assert "tag name is empty" in reasons
    assert any("101 characters" in r for r in reasons)
    assert any("unsupported value type list" in r for r in reasons)
    assert any("must be a string" in r for r in reasons)
    assert reasons.count("timestamp must be a datetime, got str") == 2
    assert any("GOOD or BAD" in r for r in reasons)
    stats = intake.stats()
    assert (stats.received, stats.accepted, stats.invalid) == (9, 2, 7)


def test_naive_timestamps_can_be_read_as_local_time():
    buffer = TagBuffer(10)
    intake = Intake(buffer, Collected(), naive_is_utc=False)
    naive = datetime(2026, 5, 1, 12, 0)
    intake.submit(PollingData("g", naive, {"A": 1}))
    assert buffer.take(1)[0].timestamp == naive.astimezone(UTC)


def test_queue_source_drains_everything_queued_before_it_stops_and_reports_strange_items(tmp_path):
    q: queue.Queue = queue.Queue()
    buffer = TagBuffer(10_000)
    spool = CsvSpool(tmp_path, kind=SpoolKind.REJECTED)
    rejected = Collected()
    source = QueueSource(q, Intake(buffer, rejected), poll_timeout_s=0.01)
    source.start()
    now = datetime.now(UTC)
    for i in range(50):
        q.put(PollingData("g", now + timedelta(seconds=i), {f"T{t}": t for t in range(20)}))
    q.put([TagValue("direct", 1, now)])
    q.put({"not": "a poll"})
    source.stop()
    assert not source.thread.is_alive()
    assert len(buffer) == 50 * 20 + 1
    assert len(rejected.items) == 1 and "unsupported item on the DataQueue: dict" in rejected.items[0].reason
    spool.close()


def test_producer_never_waits_on_the_consumer():
    # The polling engine's put() must return at once even while intake is busy or stopped.
    q: queue.Queue = queue.Queue()
    gate = threading.Event()
    buffer = TagBuffer(10)

    def slow_reject(items) -> int:
        gate.wait(5)
        return 0

    source = QueueSource(q, Intake(buffer, slow_reject), poll_timeout_s=0.01)
    source.start()
    q.put(PollingData("g", "bad", {"a": 1}))  # type: ignore[arg-type]  # intake now blocks in slow_reject
    for i in range(1_000):
        q.put_nowait(PollingData("g", datetime.now(UTC), {"a": i}))
    assert q.qsize() >= 999
    gate.set()
    source.stop()
    buffer.close()
    with pytest.raises(BufferClosedError):
        buffer.put(TagValue("a", 1, datetime.now(UTC)))


def test_invalid_readings_land_in_the_rejected_file_and_are_counted_by_intake(tmp_path):
    buffer = TagBuffer(10)
    spool = CsvSpool(tmp_path, kind=SpoolKind.REJECTED)
    intake = Intake(buffer, RejectedReadings(spool))
    now = datetime.now(UTC)
    intake.submit(PollingData("g", now, {"ok": 1.0, "": 2.0, "obj": object()}))
    spool.close()
    rows = read_spool_rows([tmp_path], "rejected")
    assert sorted(r["reason"] for r in rows) == ["tag name is empty", "unsupported value type object"]
    assert all(r["error_code"] == "INVALID" for r in rows)
    stats = intake.stats()
    assert (stats.accepted, stats.invalid, stats.rejected, stats.lost) == (1, 2, 2, 0)


def test_invalid_readings_no_file_can_take_are_counted_lost(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    intake = Intake(TagBuffer(10), RejectedReadings(CsvSpool(blocker / "backup", kind=SpoolKind.REJECTED)))
    intake.submit(PollingData("g", "not a time", {"a": 1, "b": 2}))  # type: ignore[arg-type]
    stats = intake.stats()
    assert (stats.invalid, stats.rejected, stats.lost) == (2, 0, 2)
