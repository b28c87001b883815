"""Metrics for a database that refuses the collector's credentials (read at scrape time).

A sink behind a login guard (Oracle, whose profiles lock an account after repeated refused
logins, and PostgreSQL) reports its :class:`~collector.sinks.login_guard.LoginStatus`; a sink with
no login at all (SQLite) exports zeros, so that every collector of a fleet has the same series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.sinks.login_guard import LoginStatus

NO_LOGIN = LoginStatus(refused=False, failed_logins=0, suspended=False, next_attempt_in_s=None, code=None)


class LoginCollector(Collector):
    """``collector_sink_credentials_refused``, ``collector_sink_failed_logins`` and
    ``collector_sink_login_suspended``, from the guard's status at each scrape."""

    def __init__(self, status: Callable[[], LoginStatus] | None) -> None:
        self._status = status

    def collect(self) -> Iterable[Metric]:
        status = self._status() if self._status is not None else NO_LOGIN
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
