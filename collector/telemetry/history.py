"""Recent changes of the counters that mean trouble (overflow, lost values, backup failures).

A counter total says "something happened since start"; an operator needs "is it happening now".
:class:`CounterHistory` keeps periodic readings for a few minutes so the status API can tell how
much each counter grew over that span.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

DEFAULT_HORIZON_S = 300.0


class CounterHistory:
    """Readings of named counters over the last ``horizon_s`` seconds; thread-safe."""

    def __init__(
        self, horizon_s: float = DEFAULT_HORIZON_S, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._horizon = horizon_s
        self._clock = clock
        self._lock = threading.Lock()
        self._readings: deque[tuple[float, dict[str, int]]] = deque()

    @property
    def horizon_s(self) -> float:
        return self._horizon

    def record(self, counters: Mapping[str, int]) -> None:
        now = self._clock()
        with self._lock:
            self._readings.append((now, dict(counters)))
            # Keep one reading at or beyond the horizon, so an increase covers the whole span.
            while len(self._readings) > 1 and self._readings[1][0] <= now - self._horizon:
                self._readings.popleft()

    def increase(self, current: Mapping[str, int]) -> dict[str, int]:
        """How much each counter in ``current`` grew since the oldest reading kept (all of it when
        there is no reading yet: since start is the best that is known)."""
        with self._lock:
            base = self._readings[0][1] if self._readings else {}
        return {name: max(0, value - base.get(name, 0)) for name, value in current.items()}
