"""TagBuffer: the bounded, thread-safe ring between intake and the writers (FR-002 to FR-005).

Producers never wait for the writers: when the ring is full the oldest values are overwritten,
and every one of them is counted (with a spill handler, a producer also runs the handler for its own
excess, see below). Consumers take batches; they sleep on a condition that producers signal only when
a full batch waits, so the hot path is an append, two counter updates and a length check under one
lock.

With a spill level, a put that would fill the ring beyond it moves the oldest values, as many as
are beyond it, out of the ring to a spill queue for the spill guard (which saves them to the backup
CSV): the writers keep the newest ``spill_level`` values, and only what they could not take leaves.
A poll larger than the free part of the ring is spilled, not overwritten. The spill queue holds at
most ``capacity`` values; only when it is full too (the disk cannot keep up either) does the ring
overwrite. Values in the spill queue have left the ring: they count as removed, and the writer
counts them in flight until they are backed up.

With a spill handler (:meth:`TagBuffer.set_spill_handler`), the producer whose put moved values to
the spill queue calls it once the lock is released, so the producer pays for its own excess (in
the service: encoding it for the backup file, which the spill guard then writes) rather than
leaving all of it to another thread (docs/benchmarks.md, "Overload").
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from collector.model import TagValue

DEFAULT_CAPACITY = 10_000

log = logging.getLogger("collector.buffer")


class Batch(list[TagValue]):
    """Values that left the buffer together, and where they stood in it.

    Values are numbered in the order they entered the buffer, from 0, and every departure (a take,
    a move to the spill queue, an overwrite) removes the oldest ones, so a batch is one contiguous
    run of positions, or, for what the spill guard takes, a few runs (``ranges``: (first, count)).
    The write-ahead log releases values by these positions once their fate is final.
    """

    __slots__ = ("ranges",)

    def __init__(
        self,
        values: Iterable[TagValue] = (),
        position: int = 0,
        *,
        ranges: list[tuple[int, int]] | None = None,
    ) -> None:
        super().__init__(values)
        self.ranges = ranges if ranges is not None else [(position, len(self))]

    @property
    def position(self) -> int:
        return self.ranges[0][0]


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
        self._spilling: deque[TagValue] = deque()
        self._spill_ranges: list[tuple[int, int]] = []  # positions of what waits in _spilling
        self._spill_capacity = capacity if spill_level is not None else 0
        self._capacity = capacity
        self._batch_size = batch_size
        # A level nobody can reach keeps the producer's check a single comparison.
        self._spill_level = spill_level if spill_level is not None else capacity + 1
        self._clock = clock
        # Told (position of the first, count) of values overwritten, outside the lock.
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
        self._wake_level = self._batch_size
        self._spill_handler: Callable[[], object] | None = None

    def set_spill_handler(self, handler: Callable[[], object] | None) -> None:
        """Have every producer call ``handler`` (outside the lock) after a put of its moved values
        to the spill queue; it is expected to take them (:meth:`wait_for_spill`) and save them.
        A thread waiting in :meth:`wait_for_spill` is then no longer woken for each spill, only
        by its timeout, closing, or a handler that failed."""
        self._spill_handler = handler

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
        self._put_one(item)
        if self._spilling and self._spill_handler is not None:
            self._hand_over_spill()

    def _put_one(self, item: TagValue) -> None:
        dropped = -1
        with self._lock:
            if self._closed:
                raise BufferClosedError("buffer is closed")
            items = self._items
            size = len(items)
            if size >= self._spill_level and self._spill_room():
                self._spill_locked(1)
                size -= 1
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
        values: Sequence[TagValue] = batch if isinstance(batch, list | tuple) else list(batch)
        total = self._put_values(values)
        if self._spilling and self._spill_handler is not None:
            self._hand_over_spill()
        return total

    def _hand_over_spill(self) -> None:
        """The producer saves what its put moved to the spill queue (see the module doc)."""
        handler = self._spill_handler
        if handler is None:
            return
        try:
            handler()
        except Exception:
            # Never the producer's problem: whatever is left in the spill queue is taken by the
            # waiting thread instead.
            log.exception("spill handler failed; the spill guard takes the values")
            with self._lock:
                self._spill_needed.notify()

    def _put_values(self, values: Sequence[TagValue]) -> int:
        """The locked part of :meth:`put_many`; the caller runs the spill handler after it."""
        total = len(values)
        if not total:
            return 0
        excess = front = 0
        with self._lock:
            if self._closed:
                raise BufferClosedError("buffer is closed")
            items = self._items
            beyond = len(items) + total - self._spill_level
            # A producer that saves its own excess can spill a whole put of its own: the spill
            # queue is emptied by this same call, so it holds no more than the caller already did.
            room = self._spill_room() + (total if self._spill_handler is not None else 0)
            if beyond > 0 and room > 0:
                values = self._spill_beyond_locked(values, min(beyond, room))
            if values:
                count = len(values)
                before = len(items)
                excess = before + count - self._capacity
                if excess > 0:
                    front = self._removed + self._overflow
                    self._overflow += excess
                if before == 0 or excess >= before:
                    # Everything that waited is gone; the oldest value now arrived just now.
                    self._oldest_since = self._clock()
                items.extend(values)
                self._inserted += count
                self._after_put(len(items))
        if excess > 0 and self._on_overflow is not None:
            self._on_overflow(front, excess)
        return total

    def _spill_beyond_locked(self, values: Sequence[TagValue], count: int) -> Sequence[TagValue]:
        """Move the ``count`` oldest values, those of the ring first, then the oldest of ``values``,
        to the spill queue; return the part of ``values`` left for the ring."""
        from_ring = min(count, len(self._items))
        if from_ring:
            self._spill_locked(from_ring)
        rest = count - from_ring
        if rest:
            self._spilling.extend(values[:rest])
            self._note_spilled(rest)
            self._inserted += rest
            self._removed += rest
            values = values[rest:]
            self._wake_spill_guard()
        return values

    def _after_put(self, size: int) -> None:
        if size > self._high_water:
            self._high_water = size
        if size >= self._wake_level:
            self._wake_locked(size)

    def _wake_locked(self, size: int) -> None:
        if size >= self._batch_size and self._batch_waiters:
            # One waiter per full batch: a burst of several batches wakes several writers.
            self._batch_ready.notify(size // self._batch_size)

    def _spill_room(self) -> int:
        """How many more values the spill queue takes (none when the buffer has no spill level)."""
        return self._spill_capacity - len(self._spilling)

    def _spill_locked(self, count: int) -> None:
        """Move the ``count`` oldest values of the ring to the spill queue."""
        popleft = self._items.popleft
        self._spilling.extend([popleft() for _ in range(count)])
        self._note_spilled(count)
        self._removed += count
        if not self._items:
            self._oldest_since = 0.0
        self._wake_spill_guard()

    def _note_spilled(self, count: int) -> None:
        """Record the positions of ``count`` values joining the spill queue (the oldest that have not
        left yet), merged with the run before when they follow it."""
        start = self._removed + self._overflow
        ranges = self._spill_ranges
        if ranges and ranges[-1][0] + ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + count)
        else:
            ranges.append((start, count))

    def _wake_spill_guard(self) -> None:
        if self._spill_waiters and self._spill_handler is None:
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
        """Wait until values wait in the spill queue, then take all of them (oldest first).

        Returns ``[]`` on timeout, or when the buffer is closed and the queue is empty. Used by the
        spill guard, which saves them to the backup CSV; taking all at once lets one fsync cover
        them, however fast values arrive.
        """
        with self._lock:
            if not self._spilling and not self._closed:
                self._spill_waiters += 1
                try:
                    self._spill_needed.wait(timeout_s)
                finally:
                    self._spill_waiters -= 1
            taken = Batch(self._spilling, ranges=self._spill_ranges)
            self._spilling.clear()
            self._spill_ranges = []
            return taken

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
