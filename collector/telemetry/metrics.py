"""The Prometheus metrics: read from the stats snapshot at scrape time, plus per-batch histograms.

Counters and gauges are not updated on the hot path at all: :class:`SnapshotCollector` reads one
:class:`~collector.stats.Snapshot` (and lists the backup directories) when Prometheus scrapes, so
every term of the accounting identity comes from the same consistent reading. The histograms are
fed once per batch by :class:`~collector.telemetry.listener.TelemetryListener`.

The names below are a contract: ``docs/metrics.md`` lists them, and the Grafana dashboard, the
alert rules and the tests use exactly these.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.circuit import CircuitState
from collector.inventory import Inventory
from collector.spool_format import SpoolKind
from collector.stats import Snapshot
from collector.telemetry.disk import DiskReading
from collector.telemetry.sources import source_metrics
from collector.telemetry.wal_metrics import wal_metrics

NAMESPACE = "collector"

# Histograms (fed per batch).
BATCH_SIZE = "collector_batch_size_rows"
WRITE_DURATION = "collector_write_duration_seconds"
END_TO_END_LATENCY = "collector_end_to_end_latency_seconds"

# Batches run from a handful of values (a quiet plant, a flush on the 0.5 s timer) to the configured
# batch size (500 by default, up to several thousand when raised).
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 750, 1000, 2000, 5000, 10000)
# A healthy insert takes milliseconds; a struggling database seconds; a call timeout tens of seconds.
# 2 s is the specification's average latency bound (SC-002), so it is a bucket edge.
WRITE_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60)
# Collection to commit: normally the flush interval plus a write (under 2 s, US1-1); during retries
# up to the 7 s retry window and beyond.
END_TO_END_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 20, 30, 60, 120)

VALUE_OUTCOMES = ("written", "duplicate", "rejected", "backed_up", "overflow", "lost")
"""``collector_values_total`` outcomes: with the buffer size and the in-flight gauge they add up to
``collector_values_accepted_total`` (the accounting identity)."""


class SnapshotCollector(Collector):
    """A custom collector that turns one snapshot into every counter and gauge, at scrape time."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        inventory: Callable[[], Inventory],
        sink_ok: Callable[[], bool],
        *,
        build_info: Mapping[str, str],
        spill_ratio: float = 1.0,
        disks: Callable[[], Sequence[DiskReading]] = tuple,
    ) -> None:
        self._snapshot = snapshot
        self._inventory = inventory
        self._sink_ok = sink_ok
        self._build_info = {"python_version": platform.python_version(), **build_info}
        self._spill_ratio = spill_ratio
        self._disks = disks

    def collect(self) -> Iterable[Metric]:
        snap = self._snapshot()
        inventory = self._inventory()
        yield from _buffer_metrics(snap, self._spill_ratio)
        yield from _value_metrics(snap)
        yield from _writer_metrics(snap, self._sink_ok())
        yield from _backup_metrics(snap, inventory)
        yield from wal_metrics(snap.wal)
        yield from _disk_metrics(self._disks())
        yield from source_metrics(snap.sources)
        info = GaugeMetricFamily(
            "collector_build_info",
            "The collector's version and runtime; always 1.",
            labels=sorted(self._build_info),
        )
        info.add_metric([self._build_info[k] for k in sorted(self._build_info)], 1)
        yield info


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _buffer_metrics(snap: Snapshot, spill_ratio: float) -> Iterable[Metric]:
    w = snap.writer
    yield _gauge("collector_buffer_size", "Values waiting in the ring buffer.", w.buffer_size)
    yield _gauge("collector_buffer_capacity", "Maximum values the ring buffer holds.", w.buffer_capacity)
    yield _gauge(
        "collector_buffer_utilization_ratio",
        "Buffer size divided by capacity (0 to 1).",
        w.buffer_size / w.buffer_capacity if w.buffer_capacity else 0.0,
    )
    # Exported so that the alert rules and the dashboard follow buffer.spill_ratio instead of
    # repeating it: the level at which the buffer counts as full.
    yield _gauge(
        "collector_buffer_spill_ratio",
        "Utilization at which the spill guard moves the oldest values to backup (1 when spilling is off).",
        spill_ratio,
    )
    yield _gauge(
        "collector_buffer_high_water_mark", "Largest buffer size seen since start.", w.buffer_high_water
    )
    yield _counter("collector_buffer_inserted_total", "Values put into the buffer.", w.buffer_inserted)
    yield _counter(
        "collector_buffer_removed_total", "Values taken out of the buffer by the writers.", w.buffer_removed
    )
    yield _counter(
        "collector_buffer_overflow_total",
        "Values discarded because the buffer was full (oldest first).",
        w.buffer_overflow,
    )
    yield _counter(
        "collector_buffer_spilled_total",
        "Values the spill guard saved to backup because the buffer was nearly full.",
        w.spilled,
    )


def _value_metrics(snap: Snapshot) -> Iterable[Metric]:
    w = snap.writer
    yield _counter(
        "collector_values_accepted_total", "Readings handed to the collector, valid or not.", snap.accepted
    )
    outcomes = CounterMetricFamily(
        "collector_values_total",
        "Values by where they ended: written, duplicate, rejected, backed_up, overflow, lost.",
        labels=["outcome"],
    )
    terms = snap.terms()
    counts = {
        "written": terms["written"],
        "duplicate": terms["duplicate"],
        "rejected": terms["rejected"],
        "backed_up": terms["backed_up"],
        "overflow": terms["overflow_dropped"],
        "lost": terms["lost"],
    }
    for outcome in VALUE_OUTCOMES:
        outcomes.add_metric([outcome], counts[outcome])
    yield outcomes
    yield _gauge(
        "collector_values_in_flight",
        "Values taken from the buffer and not yet settled (being written or waiting for a retry).",
        w.in_flight,
    )
    yield _gauge("collector_values_retry_pending", "Values in batches waiting for a retry.", w.retry_pending)
    yield _counter("collector_polls_total", "Polls taken from the DataQueue.", snap.intake.polls)


def _writer_metrics(snap: Snapshot, sink_ok: bool) -> Iterable[Metric]:
    w = snap.writer
    batches = CounterMetricFamily(
        "collector_batches_total",
        "Batches by outcome: written (committed) or backed_up (saved to the backup CSV).",
        labels=["outcome"],
    )
    batches.add_metric(["written"], w.batches_written)
    batches.add_metric(["backed_up"], w.batches_backed_up)
    yield batches
    yield _counter(
        "collector_write_attempts_failed_total",
        "Batch write attempts that failed (each retry counts).",
        w.attempts_failed,
    )
    yield _counter("collector_write_retries_total", "Batch write retries started.", w.retries)
    # Present from the first scrape (0 until the first commit, as Prometheus's own
    # *_last_success_timestamp_seconds gauges do), so "no commit for N minutes" is computable for a
    # collector that never reached its database too.
    yield _gauge(
        "collector_last_success_timestamp_seconds",
        "Unix time of the last committed batch; 0 before the first.",
        w.last_success_at or 0.0,
    )
    circuit_open = w.circuit.state is CircuitState.OPEN
    yield _gauge(
        "collector_circuit_open",
        "1 while the circuit is open: batches go straight to backup until a probe succeeds.",
        1 if circuit_open else 0,
    )
    yield _gauge(
        "collector_circuit_permanent_error",
        "1 while the circuit is open for an error retrying cannot fix (schema, credentials).",
        1 if circuit_open and w.circuit.permanent else 0,
    )
    yield _counter("collector_circuit_trips_total", "Times the circuit opened.", w.circuit.trips)
    yield _counter(
        "collector_circuit_probes_total", "Database probes made while the circuit was open.", w.circuit.probes
    )
    yield _gauge(
        "collector_sink_up",
        "1 when the database answered the last write or probe and the circuit is closed;"
        " 0 before the first answer.",
        1 if sink_ok and not circuit_open else 0,
    )


def _backup_metrics(snap: Snapshot, inventory: Inventory) -> Iterable[Metric]:
    files = GaugeMetricFamily(
        "collector_backup_files",
        "Backup (kind=backup) and rejected (kind=rejected) CSV files waiting in the backup directories.",
        labels=["kind"],
    )
    size = GaugeMetricFamily(
        "collector_backup_bytes", "Total size of the waiting CSV files.", labels=["kind"]
    )
    rows = CounterMetricFamily(
        "collector_backup_rows_total", "Rows written to CSV files since start.", labels=["kind"]
    )
    failures = CounterMetricFamily(
        "collector_backup_failures_total",
        "Appends that failed in a directory (disk full, permission denied), whether or not the"
        " fallback directory took them.",
        labels=["kind"],
    )
    created = CounterMetricFamily(
        "collector_backup_files_created_total", "CSV files created since start.", labels=["kind"]
    )
    fallback = GaugeMetricFamily(
        "collector_backup_fallback_active",
        "1 while the file being written is in the fallback directory.",
        labels=["kind"],
    )
    spools = {SpoolKind.BACKUP: snap.backup, SpoolKind.REJECTED: snap.rejected_files}
    for spool_kind, stats in spools.items():
        waiting = inventory.of_kind(spool_kind)
        kind = spool_kind.value
        files.add_metric([kind], len(waiting))
        size.add_metric([kind], sum(f.bytes for f in waiting))
        rows.add_metric([kind], stats.rows)
        failures.add_metric([kind], stats.failures)
        created.add_metric([kind], stats.files_created)
        fallback.add_metric([kind], 1 if stats.using_fallback else 0)
    yield from (files, size, rows, failures, created, fallback)


def _disk_metrics(readings: Sequence[DiskReading]) -> Iterable[Metric]:
    labels = ["directory", "path"]
    avail = GaugeMetricFamily(
        "collector_backup_filesystem_avail_bytes",
        "Bytes still available to the collector on the file system of a backup directory"
        " (directory=primary or fallback).",
        labels=labels,
    )
    size = GaugeMetricFamily(
        "collector_backup_filesystem_size_bytes",
        "Size of the file system of a backup directory.",
        labels=labels,
    )
    for reading in readings:
        avail.add_metric([reading.directory, reading.path], reading.avail_bytes)
        size.add_metric([reading.directory, reading.path], reading.size_bytes)
    yield from (avail, size)
