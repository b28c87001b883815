"""The circuit breaker that sends batches straight to backup while the database is known down."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    """Batches go to the database."""
    OPEN = "open"
    """The database is down (or refuses the schema or the login): batches go to backup, and one
    probe at a time checks whether it is back."""


@dataclass(frozen=True, slots=True)
class CircuitStatus:
    state: CircuitState
    reason: str
    permanent: bool
    opened_at: float | None
    """Wall-clock time the circuit opened, for the status API."""
    trips: int
    probes: int


class CircuitBreaker:
    """Opens when a batch has exhausted its retries or the error is permanent; closes when a probe
    succeeds. Probes are spaced ``probe_interval_s`` apart and only one runs at a time, so a database
    that hangs ties up one writer, not all of them."""

    def __init__(
        self,
        probe_interval_s: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if probe_interval_s <= 0:
            raise ValueError(f"probe_interval_s must be positive, got {probe_interval_s}")
        self._interval = probe_interval_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._reason = ""
        self._permanent = False
        self._opened_at: float | None = None
        self._next_probe = 0.0
        self._probing = False
        self._trips = 0
        self._probes = 0

    @property
    def is_open(self) -> bool:
        return self._state is CircuitState.OPEN

    @property
    def probe_interval_s(self) -> float:
        return self._interval

    def trip(self, reason: str, *, permanent: bool = False) -> bool:
        """Open the circuit. Returns True if it was closed (so the caller logs the change once)."""
        with self._lock:
            self._reason = reason
            self._permanent = permanent
            if self._state is CircuitState.OPEN:
                return False
            self._state = CircuitState.OPEN
            self._opened_at = self._wall_clock()
            self._next_probe = self._clock() + self._interval
            self._trips += 1
            return True

    def claim_probe(self) -> bool:
        """True if the caller should probe now; it must then call :meth:`probe_done`."""
        with self._lock:
            if self._state is not CircuitState.OPEN or self._probing:
                return False
            if self._clock() < self._next_probe:
                return False
            self._probing = True
            self._probes += 1
            return True

    def seconds_to_probe(self) -> float | None:
        """How long until a probe is due, or None when the circuit is closed."""
        with self._lock:
            if self._state is not CircuitState.OPEN:
                return None
            return max(0.0, self._next_probe - self._clock())

    def probe_done(self, healthy: bool, reason: str = "", *, permanent: bool = False) -> bool:
        """Record a probe's result. Returns True if the circuit closed."""
        with self._lock:
            self._probing = False
            self._next_probe = self._clock() + self._interval
            if not healthy:
                if reason:
                    self._reason = reason
                    self._permanent = permanent
                return False
            was_open = self._state is CircuitState.OPEN
            self._state = CircuitState.CLOSED
            self._reason = ""
            self._permanent = False
            self._opened_at = None
            return was_open

    def status(self) -> CircuitStatus:
        with self._lock:
            return CircuitStatus(
                state=self._state,
                reason=self._reason,
                permanent=self._permanent,
                opened_at=self._opened_at,
                trips=self._trips,
                probes=self._probes,
            )
