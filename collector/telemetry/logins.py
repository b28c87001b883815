"""Metrics for a database that refuses the collector's credentials (read at scrape time).

Only a sink with a login guard has them (Oracle, whose profiles lock an account after repeated
refused logins): :func:`login_metrics` reads its :class:`~collector.sinks.login_guard.LoginStatus`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.sinks.login_guard import LoginStatus


class LoginCollector(Collector):
    """``collector_sink_credentials_refused``, ``collector_sink_failed_logins`` and
    ``collector_sink_login_suspended``, from the guard's status at each scrape."""

    def __init__(self, status: Callable[[], LoginStatus]) -> None:
        self._status = status

    def collect(self) -> Iterable[Metric]:
        status = self._status()
        yield GaugeMetricFamily(
            "collector_sink_credentials_refused",
            "1 while the database refuses the collector's credentials (wrong password, account locked"
            " or expired): a person must fix the password or the account.",
            value=1 if status.refused else 0,
        )
        yield GaugeMetricFamily(
            "collector_sink_failed_logins",
            "Refused logins in a row since the last good one: what the database profile counts"
            " towards locking the account (Oracle's FAILED_LOGIN_ATTEMPTS).",
            value=status.failed_logins,
        )
        yield GaugeMetricFamily(
            "collector_sink_login_suspended",
            "1 while the collector makes no more login attempts (it stopped below the lock limit)"
            " until the password file changes or the service restarts.",
            value=1 if status.suspended else 0,
        )
