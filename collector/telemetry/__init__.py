"""What the service tells the outside about itself: Prometheus metrics and OpenTelemetry traces.

:class:`Telemetry` bundles a metrics registry (the scrape-time snapshot collector, the per-batch
histograms and the standard process collectors), the writer listener that feeds it, the tracer the
writer's spans come from, and a small sampler that keeps recent counter readings for the status
API. It runs beside the pipeline as one of the service's components.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from opentelemetry import trace
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from collector.inventory import Inventory
from collector.stats import Snapshot
from collector.telemetry.disk import DiskReading, DiskSpace
from collector.telemetry.history import CounterHistory
from collector.telemetry.listener import ListenerChain, TelemetryListener
from collector.telemetry.metrics import SnapshotCollector
from collector.telemetry.tracing import Tracing, configure_tracing
from collector.telemetry.window import RollingWindow, WindowSummary

__all__ = [
    "CounterHistory",
    "DiskReading",
    "DiskSpace",
    "ListenerChain",
    "RollingWindow",
    "SnapshotCollector",
    "Telemetry",
    "TelemetryListener",
    "Tracing",
    "WindowSummary",
    "configure_tracing",
    "trouble_counters",
]

log = logging.getLogger("collector.telemetry")

SAMPLE_INTERVAL_S = 5.0


def trouble_counters(snapshot: Snapshot) -> dict[str, int]:
    """The counters whose recent growth the status API reports as alerts (``accepted`` for a
    stalled intake)."""
    return {
        "accepted": snapshot.accepted,
        "overflow": snapshot.writer.buffer_overflow,
        "spilled": snapshot.writer.spilled,
        "trips": snapshot.writer.circuit.trips,
        "lost": snapshot.lost,
        "backup_failures": snapshot.backup.failures + snapshot.rejected_files.failures,
    }


class Telemetry:
    """Metrics registry, writer listener, tracer and recent-history sampler for one service."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        tracing: Tracing | None = None,
        process_metrics: bool = True,
        sample_interval_s: float = SAMPLE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A registry of its own rather than the global one: two services in one process (tests,
        # an application running two plants) must not collide.
        self.registry = registry if registry is not None else CollectorRegistry()
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.tracing = tracing if tracing is not None else configure_tracing()
        self.listener = TelemetryListener(self.registry, window=RollingWindow(clock=clock))
        self.history = CounterHistory(clock=clock)
        self.disk = DiskSpace()
        self.spill_ratio = 1.0
        """The buffer utilization at which values spill to backup (1 when spilling is off)."""
        self._snapshot: Callable[[], Snapshot] | None = None
        self._interval = sample_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def tracer(self) -> trace.Tracer:
        return self.tracing.tracer

    def watch(
        self,
        snapshot: Callable[[], Snapshot],
        inventory: Callable[[], Inventory],
        *,
        build_info: Mapping[str, str],
        spill_ratio: float | None = None,
        backup_dirs: Sequence[Path] = (),
    ) -> None:
        """Export the service's counters, read from ``snapshot`` at every scrape, and the free space
        under ``backup_dirs`` (the primary directory first), read by the sampler."""
        self._snapshot = snapshot
        self.spill_ratio = spill_ratio if spill_ratio is not None else 1.0
        self.disk = DiskSpace(backup_dirs)
        self.disk.refresh()
        self.registry.register(
            SnapshotCollector(
                snapshot,
                inventory,
                lambda: self.listener.sink_ok,
                build_info=build_info,
                spill_ratio=self.spill_ratio,
                disks=self.disk.readings,
            )
        )

    def sample(self) -> None:
        """Record the current trouble counters and read the backup disks (the sampler thread calls
        this periodically)."""
        if self._snapshot is not None:
            self.history.record(trouble_counters(self._snapshot()))
        self.disk.refresh()

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="telemetry-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sample()
            except Exception:
                log.exception("telemetry sampler error")

    def stop(self) -> None:
        """Stop sampling and flush pending spans. Safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()
        self.tracing.shutdown()
