"""The API server's own metrics: open connections against the cap, and why connections were closed.

A scrape that shows connections at the cap and evictions climbing is the sign of idle or hostile
clients (or of a cap too low for the scrapers and probes that share the port).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.api.server import ApiServer


class ServerCollector(Collector):
    """Reads the server's counters at scrape time."""

    def __init__(self, server: ApiServer) -> None:
        self._server = server

    def collect(self) -> Iterable[Metric]:
        server = self._server
        yield GaugeMetricFamily(
            "collector_api_connections", "Open connections to the API port.", value=server.open_connections
        )
        yield GaugeMetricFamily(
            "collector_api_max_connections",
            "The connection cap (api.max_connections, lowered to fit the open-file limit).",
            value=server.max_connections,
        )
        closed = CounterMetricFamily(
            "collector_api_connections_closed_total",
            "Connections the server closed on its own: evicted (the longest-waiting, to make room at"
            " the cap) or timed_out (idle, or a request or answer too slow).",
            labels=["reason"],
        )
        closed.add_metric(["evicted"], server.evicted)
        closed.add_metric(["timed_out"], server.timed_out)
        yield closed
