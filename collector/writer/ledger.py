"""The writer's ledger: where every value taken from the buffer went, and one consistent snapshot.

Every value a worker takes from the buffer ends in exactly one of: written, duplicate, rejected,
backed up, lost (no backup directory could take it); until then it is in flight. The ledger counts
the first five under one lock and never counts ``in_flight``: :meth:`Ledger.snapshot` reads the
buffer's counters under the same lock and derives it as "removed from the buffer and not yet
settled". A value settles only under this lock, and leaves the buffer before it can settle, so
every snapshot satisfies the accounting identity exactly, not only at rest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from collector.buffer import TagBuffer
from collector.circuit import CircuitStatus
from collector.sinks.base import WriteResult


@dataclass(frozen=True, slots=True)
class WriterStats:
    """One consistent snapshot of the writer and the buffer it drains."""

    # Buffer counters, read under the ledger's lock so in_flight is exact.
    buffer_size: int
    buffer_capacity: int
    buffer_inserted: int
    buffer_removed: int
    buffer_overflow: int
    buffer_high_water: int
    # Where every value taken from the buffer went.
    written: int
    duplicate: int
    rejected: int
    backed_up: int
    lost: int
    in_flight: int
    retry_pending: int
    """Values waiting in the retry queue (part of in_flight)."""
    spilled: int
    """Values the spill guard saved to backup (part of backed_up)."""
    # Batches.
    batches_written: int
    attempts_failed: int
    batches_backed_up: int
    retries: int
    last_error: str
    last_success_at: float | None
    circuit: CircuitStatus
    last_error_at: float | None = None
    """Wall-clock time of ``last_error`` (kept after recovery, as a record)."""
    failing_since: float | None = None
    """Wall-clock time of the first failed attempt since the last commit; None while writes succeed."""


@dataclass(frozen=True, slots=True)
class Resumed:
    """Writes succeed again after failing: since when, and how many attempts failed meanwhile."""

    failing_since: float
    down_s: float
    failed_attempts: int


class Ledger:
    """The writer's counters; thread-safe. Each method is one event in a batch's life."""

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._written = 0
        self._duplicate = 0
        self._rejected = 0
        self._backed_up = 0
        self._lost = 0
        self._spilled = 0
        self._batches_written = 0
        self._attempts_failed = 0
        self._batches_backed_up = 0
        self._retries = 0
        self._last_error = ""
        self._last_error_at: float | None = None
        self._failing_since: float | None = None
        self._failed_in_outage = 0
        self._last_success_at: float | None = None

    def committed(self, result: WriteResult) -> Resumed | None:
        """The sink answered for a batch. Its refused rows are counted when they are saved.
        Returns how long writes had been failing, when this commit ends a run of failures."""
        now = self._wall_clock()
        with self._lock:
            self._written += result.written
            self._duplicate += result.duplicates
            self._batches_written += 1
            self._last_success_at = now
            since, self._failing_since = self._failing_since, None
            failed, self._failed_in_outage = self._failed_in_outage, 0
        return None if since is None else Resumed(since, max(0.0, now - since), failed)

    def attempt_failed(self, description: str) -> None:
        now = self._wall_clock()
        with self._lock:
            self._attempts_failed += 1
            self._last_error = description
            self._last_error_at = now
            self._failed_in_outage += 1
            if self._failing_since is None:
                self._failing_since = now

    def retried(self) -> None:
        with self._lock:
            self._retries += 1

    def backed_up(self, count: int) -> None:
        with self._lock:
            self._backed_up += count
            self._batches_backed_up += 1

    def rejected(self, count: int) -> None:
        with self._lock:
            self._rejected += count

    def lost(self, count: int) -> None:
        with self._lock:
            self._lost += count

    def spilled(self, count: int) -> int:
        """Count values the spill guard takes (they are backed up or lost separately); returns
        the total spilled so far."""
        with self._lock:
            self._spilled += count
            return self._spilled

    def snapshot(
        self,
        buffer: TagBuffer,
        retry_pending: Callable[[], int],
        circuit: Callable[[], CircuitStatus],
    ) -> WriterStats:
        with self._lock:
            stats = buffer.stats()
            settled = self._written + self._duplicate + self._rejected + self._backed_up + self._lost
            return WriterStats(
                buffer_size=stats.size,
                buffer_capacity=stats.capacity,
                buffer_inserted=stats.inserted,
                buffer_removed=stats.removed,
                buffer_overflow=stats.overflow,
                buffer_high_water=stats.high_water,
                written=self._written,
                duplicate=self._duplicate,
                rejected=self._rejected,
                backed_up=self._backed_up,
                lost=self._lost,
                in_flight=stats.removed - settled,
                retry_pending=retry_pending(),
                spilled=self._spilled,
                batches_written=self._batches_written,
                attempts_failed=self._attempts_failed,
                batches_backed_up=self._batches_backed_up,
                retries=self._retries,
                last_error=self._last_error,
                last_success_at=self._last_success_at,
                circuit=circuit(),
                last_error_at=self._last_error_at,
                failing_since=self._failing_since,
            )
