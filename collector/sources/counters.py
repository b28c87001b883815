"""What a network source (MQTT, HTTP ingest) has received, counted for metrics and the status API.

Counted once per message, never per value, so the counters cost nothing on the hot path. The lag
between a poll's collection time and its acceptance is handed to an observer (the Prometheus
histogram) once per poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

LagObserver = Callable[[str, float], None]
"""Called with (source kind, seconds from collection to acceptance) for every accepted poll."""


class SourceState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    LISTENING = "listening"
    CLOSED = "closed"


UP_STATES = frozenset({SourceState.CONNECTED, SourceState.LISTENING})


@dataclass(frozen=True, slots=True)
class SourceStats:
    """One reading of a network source's counters."""

    kind: str
    """``mqtt`` or ``http``: the ``source`` label of the metrics."""
    endpoint: str
    subscriptions: tuple[str, ...]
    state: SourceState
    messages: int
    """Messages (MQTT) or requests with a body (HTTP) received."""
    polls: int
    values: int
    """Values accepted into the pipeline."""
    refused: int
    """Readings refused (to the rejected CSV for MQTT; answered 400 for HTTP)."""
    malformed: int
    """Messages with at least one problem."""
    redeliveries: int
    """Messages the broker delivered again (DUP): values that come back as counted duplicates."""
    connects: int
    disconnects: int
    last_message_at: float | None
    last_error: str | None

    @property
    def up(self) -> bool:
        return self.state in UP_STATES


class SourceCounters:
    """Thread-safe counters of one network source."""

    def __init__(
        self,
        kind: str,
        *,
        endpoint: str,
        subscriptions: Iterable[str] = (),
        state: SourceState = SourceState.CONNECTING,
        lag_observer: LagObserver | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.kind = kind
        self._endpoint = endpoint
        self._subscriptions = tuple(subscriptions)
        self._lag_observer = lag_observer
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._state = state
        self._messages = 0
        self._polls = 0
        self._values = 0
        self._refused = 0
        self._malformed = 0
        self._redeliveries = 0
        self._connects = 0
        self._disconnects = 0
        self._last_message_at: float | None = None
        self._last_error: str | None = None

    def message(
        self,
        *,
        polls: int,
        values: int,
        refused: int,
        redelivered: bool = False,
        timestamps: Iterable[datetime] = (),
    ) -> None:
        """Count one message; ``timestamps`` are the collection times of its accepted polls."""
        now = self._wall_clock()
        with self._lock:
            self._messages += 1
            self._polls += polls
            self._values += values
            self._refused += refused
            self._malformed += 1 if refused else 0
            self._redeliveries += 1 if redelivered else 0
            self._last_message_at = now
        if self._lag_observer is not None:
            for stamp in timestamps:
                self._lag_observer(self.kind, max(0.0, now - stamp.timestamp()))

    def set_state(self, state: SourceState, error: str | None = None) -> None:
        with self._lock:
            if state is SourceState.CONNECTED and self._state is not SourceState.CONNECTED:
                self._connects += 1
            if state is SourceState.DISCONNECTED and self._state is SourceState.CONNECTED:
                self._disconnects += 1
            self._state = state
            if error is not None:
                self._last_error = error

    def error(self, error: str) -> None:
        with self._lock:
            self._last_error = error

    def stats(self) -> SourceStats:
        with self._lock:
            return SourceStats(
                kind=self.kind,
                endpoint=self._endpoint,
                subscriptions=self._subscriptions,
                state=self._state,
                messages=self._messages,
                polls=self._polls,
                values=self._values,
                refused=self._refused,
                malformed=self._malformed,
                redeliveries=self._redeliveries,
                connects=self._connects,
                disconnects=self._disconnects,
                last_message_at=self._last_message_at,
                last_error=self._last_error,
            )
