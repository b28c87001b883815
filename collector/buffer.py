"""TagBuffer: the bounded, thread-safe ring between intake and the writers (FR-002 to FR-005).

Producers never wait: when the ring is full the oldest values are overwritten, and every one of
them is counted. Consumers take batches; they sleep on a condition that producers signal only when
a full batch waits (or the spill level is reached), so the hot path is an append, two counter
updates and a length check under one lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from collector.model import TagValue

DEFAULT_CAPACITY = 10_000


class Batch(list[TagValue]):
    """Values taken from the buffer together, and the position of the first: values are numbered
    in the order they entered the buffer, from 0, and a take is always a contiguous run of them.
    The write-ahead log releases values by these positions once their fate is final."""

    __slots__ = ("position",)

    def __init__(self, values: Iterable[TagValue] = (), position: int = 0) -> None:
        super().__init__(values)
        self.position = position


class BufferClosedError(RuntimeError):
    """A value was offered after shutdown began; it was not taken, so the caller still owns it."""


@dataclass(frozen=True, slots=True)
class BufferStats:
    """One consistent reading of the buffer's counters: ``inserted = removed + overflow + size``."""

    size: int
    capacity: int
    inserted: int
    removed: int
    overflow: int
    high_water: int

    @property
    def utilization(self) -> float:
        return self.size / self.capacity


def flush_due(
    size: int, batch_size: int, oldest_age_s: float, flush_interval_s: float, closing: bool
) -> bool:
    """Should a writer take a batch now? (FR-009)

    Yes when a full batch waits, or when the oldest waiting value has waited the flush interval, or
    when the buffer is closing and anything is left.
    """
    if size >= batch_size:
        return True
    return size > 0 and (closing or oldest_age_s >= flush_interval_s)


class TagBuffer:
    """A ring of at most ``capacity`` values, oldest out first.

    ``batch_size`` is the size at which producers wake a waiting consumer; ``spill_level``, if
    given, is the size at which they wake the spill guard (see :meth:`wait_for_spill`).
    """

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        *,
        batch_size: int = 500,
        spill_level: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_overflow: Callable[[int, int], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if spill_level is not None and not 1 <= spill_level <= capacity:
            raise ValueError(f"spill_level must be between 1 and capacity ({capacity}), got {spill_level}")
        self._items: deque[TagValue] = deque(maxlen=capacity)
        self._capacity = capacity
        self._batch_size = batch_size
        # A level nobody can reach keeps the producer's check a single comparison.
        self._spill_level = spill_level if spill_level is not None else capacity + 1
        self._clock = clock
        # Told (position of the first, count) for values overwritten by overflow, outside the lock.
        self._on_overflow = on_overflow
        self._lock = threading.Lock()
        self._batch_ready = threading.Condition(self._lock)
        self._spill_needed = threading.Condition(self._lock)
        self._inserted = 0
        self._removed = 0
        self._overflow = 0
        self._high_water = 0
        self._oldest_since = 0.0
        self._closed = False
        # Counted by hand: Condition.notify on a plain Lock costs about a microsecond even with
        # nobody waiting, which would double the cost of every put.
        self._batch_waiters = 0
        self._spill_waiters = 0
        self._wake_level = min(self._batch_size, self._spill_level)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: TagValue) -> None:
        """Add one value; if the ring is full the oldest value is discarded and counted."""
        dropped = -1
        with self._lock:
            if self._closed:
                raise BufferClosedError("buffer is closed")
            items = self._items
            size = len(items)
            if size == self._capacity:
                dropped = self._removed + self._overflow
                self._overflow += 1
            else:
                if size == 0:
                    self._oldest_since = self._clock()
                size += 1
            items.append(item)
            self._inserted += 1
            if size > self._high_water:
                self._high_water = size
            if size >= self._wake_level:
                self._wake_locked(size)
        if dropped >= 0 and self._on_overflow is not None:
            self._on_overflow(dropped, 1)

    def put_many(self, batch: Iterable[TagValue]) -> int:
        """Add many values under one lock acquisition (a whole poll at once). Returns the count."""
        values = batch if isinstance(batch, list | tuple) else list(batch)
        count = len(values)
        if not count:
            return 0
        with self._lock:
            if self._closed:
                raise BufferClosedError("buffer is closed")
            items = self._items
            before = len(items)
            excess = before + count - self._capacity
            front = self._removed + self._overflow
            if excess > 0:
                self._overflow += excess
            if before == 0 or excess >= before:
                # Everything that waited is gone; the oldest value now arrived just now.
                self._oldest_since = self._clock()
            items.extend(values)
            self._inserted += count
            self._after_put(len(items))
        if excess > 0 and self._on_overflow is not None:
            self._on_overflow(front, excess)
        return count

    def _after_put(self, size: int) -> None:
        if size > self._high_water:
            self._high_water = size
        if size >= self._wake_level:
            self._wake_locked(size)

    def _wake_locked(self, size: int) -> None:
        if size >= self._batch_size and self._batch_waiters:
            # One waiter per full batch: a burst of several batches wakes several writers.
            self._batch_ready.notify(size // self._batch_size)
        if size >= self._spill_level and self._spill_waiters:
            self._spill_needed.notify()

    def take(self, max_items: int) -> Batch:
        """Remove and return up to ``max_items`` of the oldest values, without waiting."""
        with self._lock:
            return self._take_locked(max_items)

    def _take_locked(self, max_items: int) -> Batch:
        items = self._items
        count = min(max_items, len(items))
        position = self._removed + self._overflow
        if count == 0:
            return Batch((), position)
        popleft = items.popleft
        taken = Batch([popleft() for _ in range(count)], position)
        self._removed += count
        if not items:
            self._oldest_since = 0.0
        return taken

    def next_batch(self, flush_interval_s: float, timeout_s: float | None = None) -> Batch:
        """Wait until a batch is due (:func:`flush_due`) and take it; ``[]`` after ``timeout_s``.

        Returns at once with what is left when the buffer is closed, and ``[]`` when it is closed
        and empty.
        """
        clock = self._clock
        deadline = None if timeout_s is None else clock() + timeout_s
        with self._lock:
            while True:
                size = len(self._items)
                now = clock()
                age = now - self._oldest_since if size else 0.0
                if flush_due(size, self._batch_size, age, flush_interval_s, self._closed):
                    return self._take_locked(self._batch_size)
                if self._closed:
                    return Batch()
                wait = flush_interval_s - age if size else flush_interval_s
                if deadline is not None:
                    if now >= deadline:
                        return Batch()
                    wait = min(wait, deadline - now)
                self._batch_waiters += 1
                try:
                    self._batch_ready.wait(max(wait, 0.0))
                finally:
                    self._batch_waiters -= 1

    def wait_for_spill(self, timeout_s: float) -> Batch:
        """Wait until the buffer reaches the spill level; then take the oldest values, enough to bring
        it one batch below that level.

        Returns ``[]`` on timeout or when closed. Used by the spill guard, which saves those values
        to the backup CSV when the writers cannot keep the buffer from filling; taking everything
        above the mark at once lets one fsync cover all of it, however fast values arrive.
        """
        with self._lock:
            if len(self._items) < self._spill_level and not self._closed:
                self._spill_waiters += 1
                try:
                    self._spill_needed.wait(timeout_s)
                finally:
                    self._spill_waiters -= 1
            size = len(self._items)
            if self._closed or size < self._spill_level:
                return Batch()
            return self._take_locked(size - self._spill_level + self._batch_size)

    def close(self) -> None:
        """Refuse new values and wake every waiting consumer so it can drain what is left."""
        with self._lock:
            self._closed = True
            self._batch_ready.notify_all()
            self._spill_needed.notify_all()

    def stats(self) -> BufferStats:
        with self._lock:
            return BufferStats(
                size=len(self._items),
                capacity=self._capacity,
                inserted=self._inserted,
                removed=self._removed,
                overflow=self._overflow,
                high_water=self._high_water,
            )
