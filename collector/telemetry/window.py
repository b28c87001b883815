"""Rolling averages over the last few minutes of write attempts (US4-3), for the status API.

Attempts are counted into fixed time slots; a slot older than the window is reused, so recording is
O(1) and the memory is fixed whatever the write rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_WINDOW_S = 300.0


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """What happened to write attempts in the last ``window_s`` seconds."""

    window_s: float
    successful_writes: int
    """Batches committed."""
    failed_writes: int
    """Attempts that failed (each retry counts)."""
    rows_written: int
    """Values in the committed batches."""
    duration_sum_s: float
    """Time spent in the database by the committed batches. Failed attempts are left out: a
    database that refuses at once would make writes look fast, one that hangs would make them look
    slow, and either is reported as a failure, not as latency."""

    @property
    def attempts(self) -> int:
        return self.successful_writes + self.failed_writes

    @property
    def success_rate(self) -> float | None:
        return self.successful_writes / self.attempts if self.attempts else None

    @property
    def average_batch_size(self) -> float | None:
        return self.rows_written / self.successful_writes if self.successful_writes else None

    @property
    def average_write_latency_s(self) -> float | None:
        """Average time per committed batch (successful attempts only)."""
        return self.duration_sum_s / self.successful_writes if self.successful_writes else None


class _Slot:
    __slots__ = ("duration", "epoch", "failed", "ok", "rows")

    def __init__(self) -> None:
        self.epoch = -1
        self.ok = 0
        self.failed = 0
        self.rows = 0
        self.duration = 0.0


class RollingWindow:
    """Counts write attempts in ``slots`` slots spanning ``window_s`` seconds; thread-safe."""

    def __init__(
        self,
        window_s: float = DEFAULT_WINDOW_S,
        *,
        slots: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s <= 0 or slots < 1:
            raise ValueError("window_s must be positive and slots at least 1")
        self._window = window_s
        self._width = window_s / slots
        self._slots = [_Slot() for _ in range(slots)]
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def window_s(self) -> float:
        return self._window

    def record(self, ok: bool, rows: int, duration_s: float) -> None:
        epoch = int(self._clock() // self._width)
        with self._lock:
            slot = self._slots[epoch % len(self._slots)]
            if slot.epoch != epoch:
                slot.epoch, slot.ok, slot.failed, slot.rows, slot.duration = epoch, 0, 0, 0, 0.0
            if ok:
                slot.ok += 1
                slot.rows += rows
                slot.duration += duration_s
            else:
                slot.failed += 1

    def summary(self) -> WindowSummary:
        epoch = int(self._clock() // self._width)
        oldest = epoch - len(self._slots) + 1
        ok = failed = rows = 0
        duration = 0.0
        with self._lock:
            for slot in self._slots:
                if oldest <= slot.epoch <= epoch:
                    ok += slot.ok
                    failed += slot.failed
                    rows += slot.rows
                    duration += slot.duration
        return WindowSummary(self._window, ok, failed, rows, duration)
