"""SpillHandoff: spilled values the producers encoded, waiting for the spill guard to write them.

Under overload the producer whose put spilled encodes its own excess (the CPU it costs falls on
whoever offered too much), and the spill guard thread writes and fsyncs it (so no producer ever
waits for the disk). The hand-off holds at most about a ring's worth of values: when the guard is
that far behind, the producers stop taking from the spill queue and the buffer's own bounds apply.
Values here have left the buffer and are counted in flight by the ledger until they are saved.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from collector.buffer import Batch
from collector.spool_format import EncodedRows

Encoded = tuple[Batch, EncodedRows, int]
"""A batch taken from the spill queue, its backup rows, its batch id."""


class SpillHandoff:
    """A bounded queue of encoded spill batches between the producers and the spill guard."""

    def __init__(self, max_values: int) -> None:
        self._max_values = max_values
        self._items: deque[Encoded] = deque()
        self._values = 0
        """Values put and not yet reported :meth:`done` (waiting or being written)."""
        self._producers = 0
        """Producers between taking from the spill queue and putting here."""
        self._ready = threading.Condition(threading.Lock())

    @property
    def full(self) -> bool:
        """The guard is behind by at least ``max_values``: producers should not add more."""
        return self._values >= self._max_values

    @property
    def idle(self) -> bool:
        """Nothing waits, nothing is being written, and no producer is encoding."""
        with self._ready:
            return not self._items and self._values == 0 and self._producers == 0

    @contextmanager
    def producing(self) -> Iterator[None]:
        """Around a producer's taking from the spill queue and its :meth:`put`, so that the guard
        does not stop while values are in the producer's hands."""
        with self._ready:
            self._producers += 1
        try:
            yield
        finally:
            with self._ready:
                self._producers -= 1

    def put(self, item: Encoded) -> None:
        with self._ready:
            self._items.append(item)
            self._values += len(item[0])
            self._ready.notify()

    def take(self, timeout_s: float) -> Encoded | None:
        """The oldest batch, waiting up to ``timeout_s`` for one; None if none came."""
        with self._ready:
            if not self._items and timeout_s > 0:
                self._ready.wait(timeout_s)
            return self._items.popleft() if self._items else None

    def done(self, count: int) -> None:
        """``count`` values taken earlier are saved (or counted lost)."""
        with self._ready:
            self._values -= count
