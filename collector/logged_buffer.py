"""LoggedBuffer: the ring buffer with the write-ahead log in front of it.

A poll batch is appended to the log, then put in the ring, under one lock, so the log's positions
and the ring's positions are the same numbers: the ring numbers values in the order they enter it,
and every take hands out a contiguous run of them (:class:`~collector.buffer.Batch`). The writers
report a batch's final fate with :meth:`LoggedBuffer.settled`; values the ring overwrites are
released as they are dropped (they are counted as overflow, which is final).

On start, :meth:`feed_recovered` puts the values the log still held from before the last stop into
the ring before anything new, waiting for room so that none of them is overwritten.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from collector.buffer import DEFAULT_CAPACITY, Batch, BufferClosedError, TagBuffer
from collector.model import TagValue
from collector.wal import WriteAheadLog

log = logging.getLogger("collector.wal")


class LoggedBuffer(TagBuffer):
    """A :class:`TagBuffer` whose every value is in the write-ahead log before a writer can take it."""

    def __init__(
        self,
        wal: WriteAheadLog,
        capacity: int = DEFAULT_CAPACITY,
        *,
        batch_size: int = 500,
        spill_level: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(capacity, batch_size=batch_size, spill_level=spill_level, on_overflow=wal.release)
        self.wal = wal
        self._sleep = sleep
        self._admit = threading.Lock()

    def put(self, item: TagValue) -> None:
        self.put_many((item,))

    def put_many(self, batch: Iterable[TagValue]) -> int:
        values = batch if isinstance(batch, list | tuple) else list(batch)
        if not values:
            return 0
        with self._admit:
            if self.closed:
                raise BufferClosedError("buffer is closed")
            self.wal.append(values)
            total = self._put_values(values)
        # Outside the admission lock: saving the excess waits for the disk.
        if self._spilling and self._spill_handler is not None:
            self._hand_over_spill()
        return total

    def settled(self, batch: Sequence[TagValue]) -> None:
        """The writers are done with ``batch``: every value is committed, a counted duplicate, in an
        fsynced backup or rejected file, or counted lost."""
        if isinstance(batch, Batch) and batch:
            for position, count in batch.ranges:
                self.wal.release(position, count)

    def feed_recovered(self, *, room_timeout_s: float = 60.0) -> int:
        """Put every value the log recovered into the ring, in log order, before new values.

        Waits for room (the writers, or the spill guard, make it) rather than overwrite a recovered
        value; past ``room_timeout_s`` without room (no spill guard and a stuck database) it puts
        them anyway, and the overwritten ones are counted as overflow like any other.
        """
        fed = 0
        for batch in self.wal.recovered_batches():
            deadline = self._clock() + room_timeout_s
            while len(self) + len(batch) > self.capacity and not self.closed and self._clock() < deadline:
                self._sleep(0.005)
            with self._admit:
                if self.closed:
                    # Stopped during recovery: the rest stays in the log for the next start.
                    log.warning("stopped while feeding recovered values; the rest stay in the log")
                    break
                self._put_values(batch)
            if self._spilling and self._spill_handler is not None:
                self._hand_over_spill()
            fed += len(batch)
        return fed
