"""How long until the circuit opens: from the moment the database stops answering to the moment
batches go straight to backup (``event=circuit_opened``), for each sink and way of failing.

Until then each batch is attempted and retried (FR-010), and each attempt takes as long as the
database takes to fail it: nothing for a refused connection, the busy timeout for a locked SQLite
file, the call timeout for a server that accepts and never answers. The first batch caught by the
outage opens the circuit when its last retry fails:

- at the earliest after ``attempts x fail time + the retry delays`` (a worker free for each retry);
- at the latest after one flush interval more (the batch must form) and one failing attempt more
  per retry: a retry that comes due while every worker is itself waiting on a failing attempt
  waits for one of them.

With the defaults (3 retries after 1, 2 and 4 s, 0.5 s flush) a SQLite file locked by another
process opens the circuit after 27 to 42.5 s (5 s busy timeout per attempt). The numbers are logged
at start (``circuit_opens_after_s``), listed in docs/reliability.md, and measured against the real
databases by tests/test_circuit_timing.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.config import Config, OracleSinkConfig, PostgresSinkConfig, SqliteSinkConfig
from collector.retry import RetryPolicy

POSTGRES_CLIENT_GRACE_S = 1.0
"""The PostgreSQL sink's client-side deadline runs this long after the statement timeout."""


@dataclass(frozen=True, slots=True)
class OpeningTime:
    """When the circuit opens for one way of failing, counted from the start of the outage."""

    failure: str
    """What the database does."""
    attempt_s: tuple[float, float]
    """How long one attempt takes to fail: at least, at most."""
    earliest_s: float
    latest_s: float

    def describe(self) -> str:
        return f"{self.failure}: {self.earliest_s:g}-{self.latest_s:g} s"


def opening_window(
    attempt_s: tuple[float, float], retry: RetryPolicy, flush_interval_s: float
) -> tuple[float, float]:
    """(earliest, latest) seconds from the outage's start to the circuit opening."""
    shortest, longest = attempt_s
    attempts = retry.max_retries + 1
    earliest = attempts * shortest + retry.window_s
    latest = flush_interval_s + (attempts + retry.max_retries) * longest + retry.window_s
    return round(earliest, 3), round(latest, 3)


def failure_modes(config: Config) -> list[tuple[str, tuple[float, float]]]:
    """Each way the configured database fails, with how long an attempt then takes."""
    sink = config.sink
    if isinstance(sink, SqliteSinkConfig):
        return [("locked by another process", (sink.busy_timeout_s, sink.busy_timeout_s))]
    if isinstance(sink, PostgresSinkConfig):
        return [
            # A pooled connection that the outage broke fails at once; a new one is waited for.
            ("down or refusing connections", (0.0, sink.pool_wait_timeout_s)),
            (
                "accepting connections but not answering",
                (sink.call_timeout_s, sink.call_timeout_s + POSTGRES_CLIENT_GRACE_S),
            ),
        ]
    assert isinstance(sink, OracleSinkConfig)
    return [
        ("down or refusing connections", (0.0, max(sink.connect_timeout_s, sink.pool_wait_timeout_s))),
        ("accepting connections but not answering", (sink.call_timeout_s, sink.call_timeout_s)),
    ]


def opening_times(config: Config) -> list[OpeningTime]:
    """How long until the circuit opens, for each way the configured database can fail."""
    retry = RetryPolicy.of(config.writer.max_retries, config.writer.backoff_s)
    out = []
    for failure, attempt_s in failure_modes(config):
        earliest, latest = opening_window(attempt_s, retry, config.writer.flush_interval_s)
        out.append(OpeningTime(failure, attempt_s, earliest, latest))
    return out
