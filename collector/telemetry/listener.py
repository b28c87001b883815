"""The writer listener that feeds the histograms, the rolling window and the sink's health."""

from __future__ import annotations

import time
from collections.abc import Callable

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Histogram

from collector.circuit import CircuitState, CircuitStatus
from collector.telemetry.metrics import (
    BATCH_SIZE,
    BATCH_SIZE_BUCKETS,
    END_TO_END_BUCKETS,
    END_TO_END_LATENCY,
    WRITE_DURATION,
    WRITE_DURATION_BUCKETS,
)
from collector.telemetry.window import RollingWindow
from collector.writer import BatchAttempt, Destination, WriterListener


class TelemetryListener(WriterListener):
    """Observes every batch attempt once: three histograms, the 5-minute window, sink health.

    Called by the writer outside its locks, inside the attempt's span, so each observation can
    carry the span's trace id as an exemplar (shown in OpenMetrics scrapes, and in Grafana as a
    link from a slow write to its trace).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        window: RollingWindow | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.window = window or RollingWindow()
        self._wall_clock = wall_clock
        # None until the database has answered once: a collector that never reached its database
        # must not look healthy.
        self._last_ok: bool | None = None
        self.batch_size = Histogram(
            BATCH_SIZE,
            "Values per committed batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.write_duration = Histogram(
            WRITE_DURATION,
            "Time one batch write attempt spent in the database, by outcome (success, failure).",
            ["outcome"],
            buckets=WRITE_DURATION_BUCKETS,
            registry=registry,
        )
        self.end_to_end = Histogram(
            END_TO_END_LATENCY,
            "Time from a batch's oldest collection timestamp to its commit, one observation per batch.",
            buckets=END_TO_END_BUCKETS,
            registry=registry,
        )
        # Both series exist from the first scrape, so dashboards and alerts see zeros, not gaps.
        self._success = self.write_duration.labels("success")
        self._failure = self.write_duration.labels("failure")

    def batch_attempted(self, event: BatchAttempt) -> None:
        exemplar = _trace_exemplar()
        batch, ok = event.batch, event.ok
        (self._success if ok else self._failure).observe(event.duration_s, exemplar)
        if ok and batch:
            self.batch_size.observe(len(batch), exemplar)
            # The buffer is FIFO, so the first value of a batch is its oldest.
            age = self._wall_clock() - batch[0].timestamp.timestamp()
            self.end_to_end.observe(max(0.0, age), exemplar)
        self.window.record(ok, len(batch), event.duration_s)
        self._last_ok = ok

    # batch_saved: nothing to do, the snapshot counts saved values.

    def circuit_changed(self, status: CircuitStatus) -> None:
        if status.state is CircuitState.CLOSED:
            self._last_ok = True  # a probe just succeeded
        else:
            self._last_ok = False

    def sink_answered(self, ok: bool) -> None:
        """The database answered a check outside the write path (the ping at start)."""
        self._last_ok = ok

    @property
    def sink_contacted(self) -> bool:
        """Whether the database has answered (or failed) at least once."""
        return self._last_ok is not None

    @property
    def sink_ok(self) -> bool:
        """True from a successful write or probe until the next failure; False before the
        database has answered at all."""
        return self._last_ok is True


class ListenerChain(WriterListener):
    """Passes every notification to several listeners in order."""

    def __init__(self, *listeners: WriterListener) -> None:
        self._listeners = listeners

    def batch_attempted(self, event: BatchAttempt) -> None:
        for listener in self._listeners:
            listener.batch_attempted(event)

    def batch_saved(self, size: int, destination: Destination, reason: str) -> None:
        for listener in self._listeners:
            listener.batch_saved(size, destination, reason)

    def circuit_changed(self, status: CircuitStatus) -> None:
        for listener in self._listeners:
            listener.circuit_changed(status)


def _trace_exemplar() -> dict[str, str] | None:
    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        return {"trace_id": format(context.trace_id, "032x")}
    return None
