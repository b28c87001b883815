"""How long until the circuit opens, computed and measured: the collector's answer for each sink and
way of failing (collector.circuit_timing) against the time a running service really takes, with a
real SQLite file locked by another process and a real PostgreSQL behind a proxy that refuses or
swallows everything."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from collector.circuit import CircuitState
from collector.circuit_timing import opening_times, opening_window
from collector.config import Config, load_config
from collector.model import PollingData
from collector.retry import RetryPolicy
from collector.service import CollectorService
from collector.sinks import Sink, build_sink
from collector.sinks.oracle import ddl as oracle_ddl
from tests import pg
from tests.oracle_double import FakeOracle
from tests.tcp_proxy import Mode, TcpProxy

SLACK_S = 1.0
"""Scheduling on a busy machine, beyond the computed latest moment."""

FAST_WRITER = {
    "COLLECTOR_SOURCE__TYPE": "external",
    "COLLECTOR_WRITER__MAX_RETRIES": "2",
    "COLLECTOR_WRITER__BACKOFF_S": "[0.2, 0.4]",
    "COLLECTOR_WRITER__FLUSH_INTERVAL_S": "0.1",
    "COLLECTOR_WRITER__PROBE_INTERVAL_S": "60",
    "COLLECTOR_API__ENABLED": "false",
}


def test_the_window_counts_every_attempt_every_delay_and_a_busy_worker_per_retry() -> None:
    retry = RetryPolicy.of(3, [1, 2, 4])
    # Defaults, SQLite locked: 4 attempts of 5 s and 7 s of delays; at the latest half a second to
    # form the batch and, per retry, one more 5 s attempt that holds the worker it waits for.
    assert opening_window((5.0, 5.0), retry, 0.5) == (27.0, 42.5)
    assert opening_window((0.0, 0.0), retry, 0.5) == (7.0, 7.5)
    assert opening_window((0.0, 5.0), RetryPolicy.of(0, []), 0.5) == (0.0, 5.5)
    defaults = load_config(None, environ={}, env_file=None)
    (locked,) = opening_times(defaults)
    assert (locked.earliest_s, locked.latest_s) == (27.0, 42.5)
    assert locked.describe() == "locked by another process: 27-42.5 s"


def _feed(service: CollectorService, stop: threading.Event) -> None:
    """A polling engine: 50 values every 50 ms."""
    for poll in range(1_000_000):
        if stop.wait(0.05):
            return
        stamp = datetime.now(UTC)
        service.data_queue.put(PollingData("g", stamp, {f"T{t:02d}.{poll}": float(t) for t in range(50)}))


def _seconds_to_open(
    config: Config, outage: Callable[[], AbstractContextManager[None]], sink: Sink | None = None
) -> float:
    """Run the service, let it write, start the outage; seconds until the circuit opened."""
    service = CollectorService(config, sink=sink)
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(service, stop), name="feeder")
    service.start()
    feeder.start()
    try:
        deadline = time.monotonic() + 20
        while service.snapshot().writer.written < 500:
            assert time.monotonic() < deadline, "the service does not write"
            time.sleep(0.02)
        with outage():
            started = time.monotonic()
            while service.writer.circuit.status().state is CircuitState.CLOSED:
                assert time.monotonic() - started < 120, "the circuit never opened"
                time.sleep(0.005)
            return time.monotonic() - started
    finally:
        stop.set()
        feeder.join()
        service.stop()


def _check(config: Config, failure: str, measured: float) -> None:
    (expected,) = [t for t in opening_times(config) if t.failure == failure]
    print(f"{config.sink.type}, {failure}: opened after {measured:.2f} s; computed {expected.describe()}")
    assert expected.earliest_s - 0.05 <= measured <= expected.latest_s + SLACK_S, (expected, measured)


@pytest.mark.slow
def test_a_locked_sqlite_file_opens_the_circuit_when_computed(tmp_path: Path) -> None:
    config = load_config(
        None,
        environ={
            **FAST_WRITER,
            "COLLECTOR_SINK__TYPE": "sqlite",
            "COLLECTOR_SINK__PATH": str(tmp_path / "tags.db"),
            "COLLECTOR_SINK__BUSY_TIMEOUT_S": "0.4",
            "COLLECTOR_BACKUP__DIR": str(tmp_path / "backup"),
        },
        env_file=None,
    )

    @contextmanager
    def locked() -> Iterator[None]:
        lock = sqlite3.connect(tmp_path / "tags.db", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()

    _check(config, "locked by another process", _seconds_to_open(config, locked))


def _postgres_config(port: int, table: str, tmp_path: Path) -> Config:
    return load_config(
        None,
        environ={
            **FAST_WRITER,
            "COLLECTOR_SINK__TYPE": "postgresql",
            "COLLECTOR_SINK__DSN": f"host=127.0.0.1 port={port} dbname={pg.PG_DBNAME} user={pg.PG_USER}",
            "COLLECTOR_SINK__TABLE": table,
            "COLLECTOR_SINK__POOL_SIZE": "2",
            "COLLECTOR_SINK__CONNECT_TIMEOUT_S": "0.5",
            "COLLECTOR_SINK__CALL_TIMEOUT_S": "0.5",
            "COLLECTOR_SINK__POOL_WAIT_TIMEOUT_S": "0.5",
            "COLLECTOR_BACKUP__DIR": str(tmp_path / "backup"),
        },
        env_file=None,
    )


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize(
    ("failure", "mode"),
    [
        ("down or refusing connections", Mode.REFUSE),
        ("accepting connections but not answering", Mode.BLACK_HOLE),
    ],
)
def test_a_failing_postgresql_opens_the_circuit_when_computed(
    pg_table: str, tmp_path: Path, failure: str, mode: Mode
) -> None:
    with TcpProxy(pg.PG_PORT) as proxy:
        config = _postgres_config(proxy.port, pg_table, tmp_path)

        @contextmanager
        def outage() -> Iterator[None]:
            proxy.set_mode(mode)
            if mode is Mode.REFUSE:
                proxy.cut_all()
            try:
                yield
            finally:
                proxy.set_mode(Mode.PASS)

        _check(config, failure, _seconds_to_open(config, outage))
    with psycopg.connect(pg.PG_DSN) as conn:  # the rows before the outage are there
        (rows,) = conn.execute(f"SELECT count(*) FROM {pg_table}").fetchone() or (0,)
        assert rows >= 500


@pytest.mark.slow
@pytest.mark.parametrize(
    "failure", ["down or refusing connections", "accepting connections but not answering"]
)
def test_a_failing_oracle_opens_the_circuit_when_computed(tmp_path: Path, failure: str) -> None:
    """Against the driver double (no Oracle runs here): the instance goes down, or hangs so that
    every call runs into the call timeout."""
    config = load_config(
        None,
        environ={
            **FAST_WRITER,
            "COLLECTOR_SINK__TYPE": "oracle",
            "COLLECTOR_SINK__DSN": "localhost:1521/FREEPDB1",
            "COLLECTOR_SINK__USER": "app",
            "COLLECTOR_SINK__PASSWORD": "app-secret",
            "COLLECTOR_SINK__CONNECT_TIMEOUT_S": "0.5",
            "COLLECTOR_SINK__CALL_TIMEOUT_S": "0.5",
            "COLLECTOR_SINK__POOL_WAIT_TIMEOUT_S": "0.5",
            "COLLECTOR_BACKUP__DIR": str(tmp_path / "backup"),
        },
        env_file=None,
    )
    db = FakeOracle()
    db.execute_ddl(oracle_ddl())

    @contextmanager
    def outage() -> Iterator[None]:
        if failure.startswith("down"):
            db.go_down()
        else:
            db.hang_s = 60.0
        try:
            yield
        finally:
            db.hang_s = 0.0
            db.come_up()

    _check(config, failure, _seconds_to_open(config, outage, build_sink(config.sink, oracle_driver=db)))
