import threading
from datetime import UTC, datetime

import pytest

from collector.buffer import BufferClosedError, TagBuffer, flush_due
from collector.model import TagValue
from tests.fakes import ManualClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def values(start: int, count: int) -> list[TagValue]:
    return [TagValue(f"T{i}", i, T0) for i in range(start, start + count)]


def assert_balanced(buffer: TagBuffer) -> None:
    s = buffer.stats()
    assert s.inserted == s.removed + s.overflow + s.size


def test_full_buffer_discards_oldest_first_and_counts_each_one():
    buffer = TagBuffer(10_000)
    buffer.put_many(values(0, 10_000))
    for item in values(10_000, 2_500):
        buffer.put(item)
    stats = buffer.stats()
    assert (stats.size, stats.overflow, stats.inserted, stats.high_water) == (10_000, 2_500, 12_500, 10_000)
    remaining = buffer.take(10_000)
    assert [v.value for v in remaining] == list(range(2_500, 12_500))
    assert_balanced(buffer)


def test_put_many_larger_than_capacity_keeps_the_newest():
    buffer = TagBuffer(100)
    buffer.put_many(values(0, 30))
    buffer.put_many(values(30, 250))
    stats = buffer.stats()
    assert (stats.size, stats.overflow) == (100, 180)
    assert [v.value for v in buffer.take(1000)] == list(range(180, 280))
    assert_balanced(buffer)


def test_take_removes_oldest_in_order_and_counts():
    buffer = TagBuffer(50)
    buffer.put_many(values(0, 20))
    assert [v.value for v in buffer.take(5)] == [0, 1, 2, 3, 4]
    assert buffer.take(0) == []
    stats = buffer.stats()
    assert (stats.size, stats.removed) == (15, 5)
    assert stats.utilization == pytest.approx(0.3)


def test_closed_buffer_refuses_values_but_gives_back_what_it_holds():
    buffer = TagBuffer(10, batch_size=4)
    buffer.put_many(values(0, 3))
    buffer.close()
    with pytest.raises(BufferClosedError):
        buffer.put(values(3, 1)[0])
    with pytest.raises(BufferClosedError):
        buffer.put_many(values(3, 1))
    assert len(buffer.next_batch(10.0)) == 3  # closing: no waiting for the interval
    assert buffer.next_batch(10.0) == []


@pytest.mark.parametrize(
    ("size", "age", "closing", "due"),
    [
        (0, 99.0, False, False),
        (0, 0.0, True, False),
        (499, 0.49, False, False),
        (500, 0.0, False, True),
        (1, 0.5, False, True),
        (1, 0.0, True, True),
    ],
)
def test_flush_due_is_batch_size_or_interval_whichever_first(size, age, closing, due):
    assert flush_due(size, 500, age, 0.5, closing) is due


def test_next_batch_waits_for_the_interval_measured_from_the_oldest_value():
    clock = ManualClock(step=0.001)
    buffer = TagBuffer(1000, batch_size=500, clock=clock)
    buffer.put_many(values(0, 10))
    assert buffer.next_batch(0.5, timeout_s=0.01) == []  # 0 s old: not due yet
    clock.advance(0.5)
    assert len(buffer.next_batch(0.5, timeout_s=0.01)) == 10


def test_a_full_batch_wakes_a_waiting_consumer_at_once():
    buffer = TagBuffer(1000, batch_size=100)
    got: list[int] = []
    consumer = threading.Thread(target=lambda: got.append(len(buffer.next_batch(3600.0, timeout_s=30))))
    consumer.start()
    buffer.put_many(values(0, 60))
    buffer.put_many(values(60, 60))
    consumer.join(10)
    assert not consumer.is_alive()
    assert got == [100]


def test_values_beyond_the_spill_level_go_to_the_spill_guard_oldest_first():
    buffer = TagBuffer(100, batch_size=10, spill_level=90)
    buffer.put_many(values(0, 90))
    assert buffer.wait_for_spill(0.01) == [] and len(buffer) == 90
    buffer.put(values(90, 1)[0])
    assert [v.value for v in buffer.wait_for_spill(0.01)] == [0]
    buffer.put_many(values(91, 15))  # 105 would wait: the 15 oldest leave the ring
    assert [v.value for v in buffer.wait_for_spill(0.01)] == list(range(1, 16))
    assert [v.value for v in buffer.take(90)] == list(range(16, 106)), "the writers keep the newest"
    stats = buffer.stats()
    assert (stats.inserted, stats.removed, stats.overflow, stats.size) == (106, 106, 0, 0)


def test_a_poll_larger_than_the_ring_is_spilled_not_overwritten():
    buffer = TagBuffer(100, batch_size=10, spill_level=90)
    buffer.put_many(values(0, 50))
    buffer.put_many(values(50, 140))  # 190 waiting: the 50 in the ring and the poll's 50 oldest leave
    assert [v.value for v in buffer.wait_for_spill(0.01)] == list(range(100))
    assert [v.value for v in buffer.take(100)] == list(range(100, 190))
    assert buffer.stats().overflow == 0


def test_only_a_full_spill_queue_lets_the_ring_overwrite():
    buffer = TagBuffer(100, batch_size=10, spill_level=90)
    buffer.put_many(values(0, 150))  # 60 spilled, 90 in the ring
    buffer.put_many(values(150, 100))  # the spill queue takes 40 more (100 in all), then the ring overwrites
    stats = buffer.stats()
    assert (stats.size, stats.overflow, stats.removed) == (100, 50, 100)
    assert [v.value for v in buffer.wait_for_spill(0.01)] == list(range(100))
    assert [v.value for v in buffer.take(100)] == list(range(150, 250)), (
        "overwritten: the 50 oldest in the ring"
    )
    assert stats.inserted == stats.removed + stats.overflow + stats.size


def test_without_a_spill_level_nothing_is_spilled():
    buffer = TagBuffer(100, batch_size=10)
    buffer.put_many(values(0, 150))
    assert buffer.wait_for_spill(0.0) == [] and buffer.stats().overflow == 50


def test_closing_hands_over_what_waits_in_the_spill_queue():
    buffer = TagBuffer(100, batch_size=10, spill_level=90)
    buffer.put_many(values(0, 95))
    buffer.close()
    assert [v.value for v in buffer.wait_for_spill(5.0)] == list(range(5))
    assert buffer.wait_for_spill(5.0) == []  # closed and empty: returns at once


class SavesOnTheCallersThread:
    """A spill handler that takes what waits in the spill queue, noting which thread ran it."""

    def __init__(self, buffer: TagBuffer, *, fail: bool = False) -> None:
        self.buffer = buffer
        self.fail = fail
        self.saved: list[int] = []
        self.threads: set[str] = set()

    def __call__(self) -> None:
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise OSError("the disk is gone")
        self.saved.extend(v.value for v in self.buffer.wait_for_spill(0.0))  # type: ignore[misc]


def test_a_producer_saves_its_own_excess_on_its_own_thread():
    buffer = TagBuffer(100, batch_size=10, spill_level=90)
    handler = SavesOnTheCallersThread(buffer)
    buffer.set_spill_handler(handler)
    buffer.put_many(values(0, 90))
    assert handler.saved == [] and not handler.threads, "nothing beyond the spill level: no call"
    producer = threading.Thread(target=lambda: buffer.put_many(values(90, 20)), name="plc-poller")
    producer.start()
    producer.join()
    buffer.put(values(110, 1)[0])
    assert handler.saved == list(range(21)) and handler.threads == {"plc-poller", "MainThread"}
    assert [v.value for v in buffer.take(100)] == list(range(21, 111)), "the writers keep the newest"
    assert_balanced(buffer)


def test_a_poll_larger_than_ring_and_spill_queue_together_is_saved_whole_by_its_producer():
    buffer = TagBuffer(100, batch_size=10, spill_level=90)
    handler = SavesOnTheCallersThread(buffer)
    buffer.set_spill_handler(handler)
    buffer.put_many(values(0, 90))
    buffer.put_many(values(90, 500))  # without a handler 310 of these would be overwritten
    stats = buffer.stats()
    assert stats.overflow == 0 and handler.saved == list(range(500))
    assert [v.value for v in buffer.take(100)] == list(range(500, 590))


def test_a_failing_spill_handler_leaves_the_values_to_the_spill_guard(caplog):
    buffer = TagBuffer(100, batch_size=10, spill_level=90)
    buffer.set_spill_handler(SavesOnTheCallersThread(buffer, fail=True))
    guard: list[int] = []
    waiting = threading.Thread(target=lambda: guard.extend(v.value for v in buffer.wait_for_spill(5.0)))  # type: ignore[misc]
    waiting.start()
    buffer.put_many(values(0, 95))  # accepted: the producer never sees the handler's error
    waiting.join()
    assert guard == list(range(5)) and "spill handler failed" in caplog.text
    assert_balanced(buffer)


def test_invalid_construction_names_the_argument():
    with pytest.raises(ValueError, match="capacity"):
        TagBuffer(0)
    with pytest.raises(ValueError, match="batch_size"):
        TagBuffer(10, batch_size=0)
    with pytest.raises(ValueError, match="spill_level"):
        TagBuffer(10, spill_level=11)


def test_many_producers_several_consumers_a_million_values_every_one_accounted():
    buffer = TagBuffer(10_000, batch_size=500)
    producers, per_producer, consumers = 8, 125_000, 3
    taken: list[list[TagValue]] = [[] for _ in range(consumers)]
    stop = threading.Event()

    def produce(p: int) -> None:
        # Blocks of 100 in order, every third block one put at a time, the rest with put_many.
        for block, start in enumerate(range(0, per_producer, 100)):
            chunk = [TagValue(f"P{p}", i, T0) for i in range(start, min(start + 100, per_producer))]
            if block % 3 == 0:
                for item in chunk:
                    buffer.put(item)
            else:
                buffer.put_many(chunk)

    def consume(c: int) -> None:
        while not (stop.is_set() and not len(buffer)):
            taken[c].extend(buffer.next_batch(0.01, timeout_s=0.05))

    threads = [threading.Thread(target=consume, args=(c,)) for c in range(consumers)]
    threads += [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    for t in threads[consumers:]:
        t.join()
    stop.set()
    for t in threads[:consumers]:
        t.join()

    stats = buffer.stats()
    total = producers * per_producer
    consumed = [v for part in taken for v in part]
    assert stats.inserted == total
    assert stats.removed == len(consumed)
    assert stats.size == 0
    assert stats.removed + stats.overflow == total
    keys = {(v.tag_name, v.value) for v in consumed}
    assert len(keys) == len(consumed), "a value was taken twice"
    # Within each producer the consumed values keep their order per consumer (FIFO).
    for part in taken:
        last: dict[str, int] = {}
        for v in part:
            assert isinstance(v.value, int)
            assert v.value > last.get(v.tag_name, -1)
            last[v.tag_name] = v.value
