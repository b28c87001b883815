"""The retry queue: failed batches waiting for their next attempt while the workers keep draining.

A batch that failed with a transient error waits here with the time of its next attempt (1 s, 2 s,
4 s after each failure, FR-010), so a retrying batch never stops the buffer from draining. Its
values still count as in flight. The queue is bounded by the retry window times the intake rate,
and emptied into the backup CSV when the circuit opens or the service stops.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from dataclasses import dataclass, field

from opentelemetry import trace

from collector.model import TagValue


@dataclass(order=True, slots=True)
class PendingRetry:
    """A failed batch, ordered by when its next attempt is due."""

    due: float
    seq: int
    batch_id: int = field(compare=False)
    """The number the writer gave the batch when it took it from the buffer (in every log line)."""
    batch: list[TagValue] = field(compare=False)
    attempts: int = field(compare=False)
    """Attempts made so far."""
    error: str = field(compare=False)
    """What the last attempt failed with."""
    trace_parent: trace.SpanContext | None = field(default=None, compare=False)
    """The first attempt's span: retries join its trace, so one trace shows the batch's story."""


class RetryQueue:
    """Failed batches by due time; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[PendingRetry] = []
        self._seq = itertools.count()
        self._values = 0

    def push(
        self,
        due: float,
        batch_id: int,
        batch: list[TagValue],
        *,
        attempts: int,
        error: str,
        trace_parent: trace.SpanContext | None,
    ) -> None:
        with self._lock:
            heapq.heappush(
                self._heap, PendingRetry(due, next(self._seq), batch_id, batch, attempts, error, trace_parent)
            )
            self._values += len(batch)

    def pop_due(self, now: float, *, all_due: bool = False) -> PendingRetry | float | None:
        """The earliest batch if it is due (every batch is due with ``all_due``); otherwise the
        seconds until it is, or None when the queue is empty."""
        with self._lock:
            if not self._heap:
                return None
            if all_due or self._heap[0].due <= now:
                item = heapq.heappop(self._heap)
                self._values -= len(item.batch)
                return item
            return self._heap[0].due - now

    def drain(self) -> list[PendingRetry]:
        """Take every waiting batch (to save it to backup)."""
        with self._lock:
            items, self._heap = self._heap, []
            self._values = 0
        return items

    def __len__(self) -> int:
        with self._lock:
            return len(self._heap)

    @property
    def values(self) -> int:
        """Values waiting (part of the writer's in-flight count)."""
        with self._lock:
            return self._values
