"""The write-ahead log's metrics, read from :class:`~collector.wal.WalStats` at scrape time.

Names (a contract with the dashboard, the alert rules and docs/metrics.md):

- ``collector_values_recovered_total``: the identity's ``recovered`` term (0 with the log off);
- ``collector_wal_enabled``: 1 when the log is on (durability ``interval`` or ``always``);
- ``collector_wal_writable``: 0 while the log cannot write and the service runs memory-only;
- ``collector_wal_full``: 1 while the size cap stops new values from being logged;
- ``collector_wal_bytes``, ``collector_wal_segments``, ``collector_wal_unfinished_values``;
- ``collector_wal_values_total{outcome="logged"|"unlogged"|"recovered"}``;
- ``collector_wal_quarantined_ranges_total``, ``collector_wal_quarantined_values_total``,
  ``collector_wal_torn_bytes_total``, ``collector_wal_write_failures_total``;
- ``collector_wal_quarantine_files``: files in ``quarantine/`` waiting for an operator;
- ``collector_wal_fsync_duration_seconds`` (histogram).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from collector.wal import FSYNC_BUCKETS_S, WalStats

FSYNC_DURATION = "collector_wal_fsync_duration_seconds"


def wal_metrics(stats: WalStats | None) -> Iterable[Metric]:
    # Exported with the log off too (as 0): it is a term of the accounting identity.
    yield CounterMetricFamily(
        "collector_values_recovered",
        "Values a previous run accepted and did not finish, given back by the write-ahead log at start.",
        value=stats.recovered_values if stats is not None else 0,
    )
    yield GaugeMetricFamily(
        "collector_wal_enabled", "1 when the write-ahead log is on.", value=0 if stats is None else 1
    )
    if stats is None:
        return
    yield GaugeMetricFamily(
        "collector_wal_writable",
        "0 while the write-ahead log cannot be written and the service runs memory-only.",
        value=1 if stats.writable else 0,
    )
    yield GaugeMetricFamily(
        "collector_wal_full",
        "1 while the log is at wal.max_bytes and new values are accepted without being logged.",
        value=1 if stats.full else 0,
    )
    yield GaugeMetricFamily("collector_wal_bytes", "Bytes in the log's segment files.", value=stats.bytes)
    yield GaugeMetricFamily("collector_wal_segments", "Segment files in the log.", value=stats.segments)
    yield GaugeMetricFamily(
        "collector_wal_unfinished_values",
        "Values admitted and not yet final and durable (what a restart would write first).",
        value=stats.unfinished,
    )
    values = CounterMetricFamily(
        "collector_wal_values",
        "Values by what the log did with them: logged, unlogged (log not writable or full), or "
        "recovered from the log at start.",
        labels=["outcome"],
    )
    values.add_metric(["logged"], stats.appended_values)
    values.add_metric(["unlogged"], stats.unlogged_values)
    values.add_metric(["recovered"], stats.recovered_values)
    yield values
    yield CounterMetricFamily(
        "collector_wal_quarantined_ranges",
        "Damaged ranges found at start and moved to quarantine/.",
        value=stats.quarantined_ranges,
    )
    yield CounterMetricFamily(
        "collector_wal_quarantined_values",
        "Unfinished values in damaged ranges (lost from the log).",
        value=stats.quarantined_values,
    )
    yield GaugeMetricFamily(
        "collector_wal_quarantine_files",
        "Files in the log's quarantine/ directory, kept for inspection until an operator deletes them.",
        value=stats.quarantine_files,
    )
    yield CounterMetricFamily(
        "collector_wal_torn_bytes", "Bytes of torn tails cut at start.", value=stats.torn_cut_bytes
    )
    yield CounterMetricFamily(
        "collector_wal_write_failures",
        "Appends, fsyncs or mark records that failed (each drops the log to memory-only).",
        value=stats.write_failures,
    )
    fsync = HistogramMetricFamily(FSYNC_DURATION, "Time one fsync of the log took.", unit="")
    buckets = [(_bound(b), float(c)) for b, c in zip(FSYNC_BUCKETS_S, stats.fsync_buckets, strict=True)]
    buckets.append(("+Inf", float(stats.fsyncs)))
    fsync.add_metric([], buckets, stats.fsync_seconds_sum)
    yield fsync


def _bound(value: float) -> str:
    return repr(float(value))


def wal_status(stats: WalStats | None) -> dict[str, object]:
    """The status API's ``wal`` section."""
    if stats is None:
        return {"enabled": False, "durability": "off"}
    count = stats.fsyncs
    return {
        "enabled": True,
        "durability": stats.durability,
        "directory": os.path.abspath(stats.directory),  # as the status names every other path
        "writable": stats.writable,
        "full": stats.full,
        "bytes": stats.bytes,
        "segments": stats.segments,
        "unfinished_values": stats.unfinished,
        "mark": stats.recorded_mark,
        "logged_values": stats.appended_values,
        "unlogged_values": stats.unlogged_values,
        "recovered_values": stats.recovered_values,
        "quarantined_ranges": stats.quarantined_ranges,
        "quarantined_values": stats.quarantined_values,
        "torn_bytes": stats.torn_cut_bytes,
        "quarantine_files": stats.quarantine_files,
        "write_failures": stats.write_failures,
        "fsyncs": count,
        "fsync_avg_ms": round(stats.fsync_seconds_sum / count * 1000, 3) if count else None,
    }
