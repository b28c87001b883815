"""Metrics of the network sources (MQTT, HTTP ingest), one series per ``source`` label.

The counters and the connection state are read from the stats snapshot at scrape time like every
other counter; the lag histogram is fed once per accepted poll.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from collector.sources.counters import SourceStats

SOURCE_LAG = "collector_source_lag_seconds"
# A poll normally arrives within milliseconds of being read; seconds mean a slow publisher or a
# backlog at the broker; minutes a redelivery after an outage.
SOURCE_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)


class SourceLag:
    """The histogram of collection-to-acceptance lag, per source."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Histogram(
            SOURCE_LAG,
            "Time from a poll's collection timestamp to its acceptance by a network source, per poll.",
            ["source"],
            buckets=SOURCE_LAG_BUCKETS,
            registry=registry,
        )

    def declare(self, source: str) -> None:
        """Export the source's (empty) buckets from the start, so a dashboard shows it before its
        first poll."""
        self.histogram.labels(source)

    def observe(self, source: str, seconds: float) -> None:
        self.histogram.labels(source).observe(seconds)


def source_metrics(sources: Iterable[SourceStats]) -> Iterable[Metric]:
    """Counters and gauges of every network source, labelled by its kind."""
    counters = {
        "messages": CounterMetricFamily(
            "collector_source_messages_total",
            "Messages (MQTT) or requests (HTTP) received by a network source.",
            labels=["source"],
        ),
        "values": CounterMetricFamily(
            "collector_source_values_total", "Values a network source accepted.", labels=["source"]
        ),
        "refused": CounterMetricFamily(
            "collector_source_refused_values_total",
            "Readings a network source refused (rejected CSV for MQTT, 400 for HTTP).",
            labels=["source"],
        ),
        "malformed": CounterMetricFamily(
            "collector_source_malformed_total",
            "Messages or requests with at least one problem.",
            labels=["source"],
        ),
        "redeliveries": CounterMetricFamily(
            "collector_source_redeliveries_total",
            "Messages the broker delivered again (their values come back as duplicates).",
            labels=["source"],
        ),
        "connects": CounterMetricFamily(
            "collector_source_connects_total", "Connections established to the broker.", labels=["source"]
        ),
        "disconnects": CounterMetricFamily(
            "collector_source_disconnects_total", "Connections to the broker lost.", labels=["source"]
        ),
    }
    connected = GaugeMetricFamily(
        "collector_source_connected",
        "1 while a network source can receive (connected to the broker; HTTP ingest listening).",
        labels=["source"],
    )
    last = GaugeMetricFamily(
        "collector_source_last_message_timestamp_seconds",
        "Unix time of the last message a network source received.",
        labels=["source"],
    )
    for stats in sources:
        for name, family in counters.items():
            family.add_metric([stats.kind], getattr(stats, name))
        connected.add_metric([stats.kind], 1 if stats.up else 0)
        if stats.last_message_at is not None:
            last.add_metric([stats.kind], stats.last_message_at)
    yield from counters.values()
    yield connected
    yield last
