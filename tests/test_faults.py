"""Faults against the real PostgreSQL, with ``collector run`` as a subprocess at 3 491 values/s.

Each case starts the collector with the simulator's ledger on, breaks something while it runs,
stops it the way an operator would, and then proves from the ledger, the table and the CSV files
that every generated value is in exactly one place: the table (once) or a backup CSV, or counted
as lost where the case cannot avoid a loss (a full disk, SIGKILL). Timeouts, retry delays and the
probe interval are shortened so each case plays out in seconds; the states the service goes
through are the same as with the defaults.

The server is stopped in one case only, for the 10 s the case needs, and started again in a
``finally`` (with the session fixture as a second safety net).
"""

from __future__ import annotations

import errno
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from collector.model import format_timestamp
from tests import pg
from tests.ci import missing
from tests.fault_harness import (
    CollectorRun,
    account,
    event_time,
    fast_config,
    record,
    start_collector,
    table_keys,
)
from tests.tcp_proxy import Mode, TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

OUTAGE_S = 10.0


@pytest.fixture
def runs() -> Iterator[list[CollectorRun]]:
    """Every collector started by a test; killed at teardown if the test left one running."""
    started: list[CollectorRun] = []
    yield started
    for run in started:
        run.kill()


@pytest.fixture
def proxy(postgres_server: pg.ServerControl) -> Iterator[TcpProxy]:
    with TcpProxy(pg.PG_PORT) as running:
        yield running


def launch(
    runs: list[CollectorRun], tmp_path: Path, table: str, port: int = pg.PG_PORT, **overrides: dict[str, Any]
) -> CollectorRun:
    run = start_collector(tmp_path, fast_config(tmp_path, table, port, **overrides))
    runs.append(run)
    return run


def errors_logged(run: CollectorRun) -> list[str]:
    return [str(event.get("error", "")) for event in run.events("write_failed")]


def test_server_stopped_for_10_s_reconnects_within_one_probe_interval(
    postgres_server: pg.ServerControl, pg_table: str, tmp_path: Path, runs: list[CollectorRun]
) -> None:
    if not postgres_server.can_control():
        missing("the PostgreSQL server is not a local cluster this test can stop and start")
    run = launch(runs, tmp_path, pg_table)
    probe_interval = run.config["writer"]["probe_interval_s"]
    time.sleep(2.0)

    stopped_at = time.time()
    with postgres_server.stopped():
        run.wait_for("circuit_opened", 15)
        time.sleep(OUTAGE_S)
    with pg.connect() as conn:
        row = conn.execute("SELECT extract(epoch FROM pg_postmaster_start_time())").fetchone()
    assert row is not None
    restarted_at = float(row[0])  # type: ignore[arg-type]

    closed = run.wait_for("circuit_closed", 15, lambda e: event_time(e) > stopped_at)
    time.sleep(2.0)
    assert run.stop() == 0

    reconnect_s = event_time(closed) - restarted_at
    assert reconnect_s <= probe_interval + 1.0  # the next probe after the server is up finds it
    stored_after = [k for k in table_keys(pg_table, pg.PG_DSN) if k[1] > _iso(event_time(closed))]
    assert stored_after, "nothing was written after the server came back"
    accounting = account(run, pg.PG_DSN)
    accounting.assert_nothing_lost()
    accounting.assert_matches(run.summary())
    assert accounting.in_backups > 0  # the outage's values went to backup
    record("server stopped 10 s, then started", accounting, reconnect_s=round(reconnect_s, 2))


def test_proxy_cutting_every_connection(
    pg_table: str, tmp_path: Path, runs: list[CollectorRun], proxy: TcpProxy
) -> None:
    run = launch(runs, tmp_path, pg_table, proxy.port)
    time.sleep(2.0)
    cut = 0
    for _ in range(8):  # connections are cut as fast as the pool opens them
        cut += proxy.cut_all()
        time.sleep(0.25)
    proxy.set_mode(Mode.REFUSE)  # then no connection at all for 2 s
    time.sleep(2.0)
    proxy.set_mode(Mode.PASS)
    run.wait_for("circuit_closed", 10)
    time.sleep(2.0)
    assert run.stop() == 0

    assert cut > 0
    accounting = account(run, pg.PG_DSN)
    accounting.assert_nothing_lost()
    accounting.assert_matches(run.summary())
    record("proxy cuts every connection, then refuses for 2 s", accounting, connections_cut=cut)


def test_proxy_adding_500_ms_of_latency(
    pg_table: str, tmp_path: Path, runs: list[CollectorRun], proxy: TcpProxy
) -> None:
    proxy.latency_s = 0.25  # each way: every round trip takes 500 ms longer
    run = launch(
        runs,
        tmp_path,
        pg_table,
        proxy.port,
        writer={"workers": 5},
        sink={"call_timeout_s": 3.0, "connect_timeout_s": 5},
    )
    time.sleep(6.0)
    assert run.stop() == 0

    assert not [e for e in errors_logged(run) if "CALL_TIMEOUT" in e]
    accounting = account(run, pg.PG_DSN)
    accounting.assert_nothing_lost()
    accounting.assert_matches(run.summary())
    assert accounting.in_db >= 0.9 * accounting.generated  # 5 workers x 500 rows per 0.5 s keep up
    record("proxy adds 500 ms per round trip (5 workers)", accounting)


def test_proxy_that_accepts_and_never_answers(
    pg_table: str, tmp_path: Path, runs: list[CollectorRun], proxy: TcpProxy
) -> None:
    run = launch(runs, tmp_path, pg_table, proxy.port)
    time.sleep(2.0)
    proxy.set_mode(Mode.BLACK_HOLE)
    run.wait_for("circuit_opened", 15)
    time.sleep(1.0)
    proxy.set_mode(Mode.PASS)
    run.wait_for("circuit_closed", 10)
    time.sleep(2.0)
    stopping = time.monotonic()
    assert run.stop(timeout_s=20) == 0
    stop_s = time.monotonic() - stopping

    assert any("CALL_TIMEOUT" in e or "POOL_TIMEOUT" in e for e in errors_logged(run))
    assert not run.events("writer_threads_stuck")
    accounting = account(run, pg.PG_DSN)
    accounting.assert_nothing_lost()
    accounting.assert_matches(run.summary())
    record("proxy black hole until the circuit opens, then 1 s more", accounting, shutdown_s=round(stop_s, 1))


def test_proxy_dropping_the_acknowledgement_of_a_commit(
    pg_table: str, tmp_path: Path, runs: list[CollectorRun], proxy: TcpProxy
) -> None:
    run = launch(runs, tmp_path, pg_table, proxy.port)
    time.sleep(1.5)
    proxy.swallow_acks(3)
    time.sleep(4.0)
    assert run.stop() == 0

    assert len(proxy.swallowed_rows) == 3
    committed_unacknowledged = sum(rows or 0 for rows in proxy.swallowed_rows)
    summary = run.summary()
    assert committed_unacknowledged > 0
    assert summary["duplicate"] == committed_unacknowledged  # every one came back as a duplicate
    accounting = account(run, pg.PG_DSN)
    accounting.assert_nothing_lost()
    accounting.assert_matches(summary)
    assert (accounting.in_backups, accounting.in_db_and_backups) == (0, 0)  # the retries succeeded
    record(
        "proxy drops the connection after a COMMIT (3 lost acknowledgements)",
        accounting,
        duplicates_counted=summary["duplicate"],
    )


def test_all_pooled_connections_held_by_another_client(
    pg_table: str, tmp_path: Path, runs: list[CollectorRun], pg_conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    run = launch(runs, tmp_path, pg_table, writer={"workers": 5}, sink={"pool_size": 5})
    application = run.config["sink"]["application_name"]
    time.sleep(2.0)
    blocked = 0
    with pg.connect() as holder:
        holder.execute("BEGIN")
        holder.execute(f"LOCK TABLE {pg_table} IN ACCESS EXCLUSIVE MODE")  # type: ignore[arg-type]
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            row = pg_conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = %s AND wait_event_type = 'Lock'",
                (application,),
            ).fetchone()
            blocked = max(blocked, int(row[0]) if row else 0)  # type: ignore[call-overload]
            time.sleep(0.05)
        time.sleep(1.0)
        holder.execute("ROLLBACK")
    released_at = time.time()
    time.sleep(3.0)
    assert run.stop() == 0

    assert blocked >= 5  # every pooled connection was stuck behind the other client's lock
    assert any("57014" in e for e in errors_logged(run))  # each wait ended at statement_timeout
    assert [k for k in table_keys(pg_table, pg.PG_DSN) if k[1] > _iso(released_at + 1.0)]
    accounting = account(run, pg.PG_DSN)
    accounting.assert_nothing_lost()
    accounting.assert_matches(run.summary())
    record("all 5 pooled connections blocked by another client's lock for 4 s", accounting, blocked=blocked)


def test_table_renamed_away_and_back(
    pg_table: str, tmp_path: Path, runs: list[CollectorRun], pg_conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    away = f"{pg_table}_away"
    run = launch(runs, tmp_path, pg_table)
    time.sleep(2.0)
    pg_conn.execute("SET lock_timeout = '5s'")
    try:
        pg_conn.execute(f"ALTER TABLE {pg_table} RENAME TO {away}")  # type: ignore[arg-type]
        opened = run.wait_for("circuit_opened", 10)
        time.sleep(2.0)
    finally:
        pg_conn.execute(f"ALTER TABLE IF EXISTS {away} RENAME TO {pg_table}")  # type: ignore[arg-type]
    run.wait_for("circuit_closed", 10)
    time.sleep(2.0)
    assert run.stop() == 0

    assert opened["permanent"] is True
    assert "42P01" in opened["reason"]
    assert any("42P01" in e for e in errors_logged(run))
    accounting = account(run, pg.PG_DSN)
    accounting.assert_nothing_lost()
    accounting.assert_matches(run.summary())
    assert accounting.in_backups > 0
    record("table renamed away for ~3 s and back", accounting)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _umount(path: Path) -> None:
    with suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=10)


@pytest.mark.parametrize("filesystem", ["tmpfs", "injected"])
def test_backup_filesystem_fills_up(
    pg_table: str, tmp_path: Path, runs: list[CollectorRun], proxy: TcpProxy, filesystem: str
) -> None:
    primary, fallback = tmp_path / "backup", tmp_path / "fallback"
    wrapper: list[str] | None = None
    if filesystem == "tmpfs":
        if not _mount_tmpfs(primary, "96k"):
            pytest.skip("this machine does not allow mounting a tmpfs (the injected variant covers it)")
        if not _mount_tmpfs(fallback, "160k"):
            _umount(primary)
            pytest.skip("this machine does not allow mounting a tmpfs (the injected variant covers it)")
    else:
        wrapper = ["-m", "tests.enospc", f"{primary}=98304", f"{fallback}=163840", "--"]
    try:
        proxy.set_mode(Mode.REFUSE)  # the database is unreachable for the whole run
        config = fast_config(tmp_path, pg_table, proxy.port, backup={"fallback_dir": str(fallback)})
        run = start_collector(tmp_path, config, wrapper=wrapper)
        runs.append(run)
        time.sleep(4.0)
        assert run.stop() == 0

        summary = run.summary()
        failures = run.events("backup_write_failed")
        assert any(e["fallback"] is True for e in failures)  # the primary filled first...
        assert list(fallback.glob("backup_*.csv"))  # ...then the fallback took rows...
        assert run.events("values_lost")  # ...until it was full too
        assert any(e.get("errno") == errno.errorcode[errno.ENOSPC] for e in failures)
        accounting = account(run, pg.PG_DSN)  # before unmounting: the files live on the tmpfs
    finally:
        if filesystem == "tmpfs":
            _umount(primary)
            _umount(fallback)

    assert accounting.in_db == 0
    assert accounting.lost > 0
    assert accounting.lost == summary["lost"]  # the loss is counted exactly
    accounting.assert_matches(summary)
    assert (accounting.backup_twice, accounting.unknown) == (0, 0)
    record(f"backup disk full ({filesystem}), database down", accounting)


def test_sigterm_during_an_outage_saves_everything_and_exits_0(
    pg_table: str, tmp_path: Path, runs: list[CollectorRun], proxy: TcpProxy
) -> None:
    run = launch(runs, tmp_path, pg_table, proxy.port)
    time.sleep(2.0)
    proxy.set_mode(Mode.REFUSE)
    time.sleep(1.0)  # mid-retry: batches wait in the retry queue
    assert run.stop(signal.SIGTERM) == 0

    started = run.events("shutdown_started")
    assert started and started[-1]["pending"] > 0  # the pending count is logged
    summary = run.summary()
    assert (summary["in_buffer"], summary["in_flight"]) == (0, 0)
    accounting = account(run, pg.PG_DSN)
    accounting.assert_nothing_lost()
    accounting.assert_matches(summary)
    record("SIGTERM 1 s into an outage", accounting, pending_at_stop=started[-1]["pending"])


def test_sigkill_loses_at_most_what_was_in_memory(
    pg_table: str, tmp_path: Path, runs: list[CollectorRun]
) -> None:
    run = launch(runs, tmp_path, pg_table)
    time.sleep(3.0)
    assert run.stop(signal.SIGKILL) == -signal.SIGKILL

    config = run.config
    largest_poll = -(-config["source"]["tags"] // config["source"]["groups"])
    in_memory_bound = (
        config["buffer"]["max_size"]  # the ring buffer
        + config["writer"]["workers"] * config["writer"]["batch_size"]  # batches being written
        + largest_poll  # a poll on the DataQueue not yet taken by intake
    )
    accounting = account(run, pg.PG_DSN)
    assert (accounting.db_twice, accounting.backup_twice, accounting.unknown) == (0, 0, 0)
    assert 0 <= accounting.lost <= in_memory_bound
    record("SIGKILL while writing normally", accounting, bound=in_memory_bound)


def _iso(wall: float) -> str:
    """A wall-clock time in the ledger's timestamp format (which sorts as text)."""
    return format_timestamp(datetime.fromtimestamp(wall, UTC))


def test_sigkill_during_an_outage_loses_at_most_the_buffer_and_the_retry_queue(
    pg_table: str, tmp_path: Path, runs: list[CollectorRun], proxy: TcpProxy
) -> None:
    run = launch(runs, tmp_path, pg_table, proxy.port)
    time.sleep(2.0)
    proxy.set_mode(Mode.REFUSE)
    outage_began = time.monotonic()
    time.sleep(1.0)  # batches now wait in the retry queue, in memory only
    assert run.stop(signal.SIGKILL) == -signal.SIGKILL
    outage_s = time.monotonic() - outage_began

    config = run.config
    rate = config["source"]["tags"] / config["source"]["interval_s"]
    # In memory at the kill: the buffer, the batches being written, and everything that arrived
    # since the outage began and was neither spilled nor backed up yet (the retry queue).
    bound = (
        config["buffer"]["max_size"]
        + config["writer"]["workers"] * config["writer"]["batch_size"]
        + int(rate * outage_s)
    )
    accounting = account(run, pg.PG_DSN)
    assert (accounting.db_twice, accounting.backup_twice, accounting.unknown) == (0, 0, 0)
    assert 0 <= accounting.lost <= bound
    record("SIGKILL 1 s into an outage", accounting, bound=bound)
