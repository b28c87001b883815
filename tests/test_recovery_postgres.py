"""Recovery on PostgreSQL: an outage played by a TCP proxy in front of the real server (lost
acknowledgements, then every connection refused), then the real ``collector replay``; afterwards
the table holds exactly what the simulator generated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest

from tests import pg
from tests.fault_harness import CollectorRun, account, event_time, fast_config, start_collector
from tests.recovery_support import REPO_ROOT, ledger_rows, same_value
from tests.tcp_proxy import Mode, TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def proxy(postgres_server: pg.ServerControl) -> Iterator[TcpProxy]:
    with TcpProxy(pg.PG_PORT) as running:
        yield running


def _replay(run: CollectorRun, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTOR_", "ORACLE_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "collector", "replay", "--config", str(run.workdir / "collector.yaml"), *args],
        cwd=run.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wait_for_rows(table: str, timeout_s: float) -> None:
    """Until the service has written to the table (a server another test restarts may delay it)."""
    deadline = time.monotonic() + timeout_s
    while not _table(table):
        assert time.monotonic() < deadline, "the service wrote nothing"
        time.sleep(0.2)


def _table(table: str) -> dict[tuple[str, object], tuple[object, object, str]]:
    with pg.connect() as conn:
        rows = conn.execute(
            f"SELECT tag_name, timestamp, tag_value::text, tag_value_text, quality FROM {table}"  # type: ignore[arg-type]
        ).fetchall()
    stored = {}
    for name, stamp, number, text, quality in rows:
        stored[(str(name), stamp.astimezone(UTC))] = (number, text, str(quality))  # type: ignore[attr-defined]
    return stored


def test_a_postgres_outage_replayed_leaves_exactly_the_ledger_in_the_table(
    pg_table: str, tmp_path: Path, proxy: TcpProxy
) -> None:
    assert pg.server_ready(pg.WAIT_FOR_SERVER_S), "PostgreSQL is not answering"
    config = fast_config(tmp_path, pg_table, proxy.port, source={"tags": 1000, "bad_ratio": 0.02})
    run = start_collector(tmp_path, config)
    try:
        _wait_for_rows(pg_table, 30)
        outage_at = time.time()
        proxy.swallow_acks(2)  # two commits whose answer never arrives...
        time.sleep(0.3)
        proxy.set_mode(Mode.REFUSE)  # ...then no connection at all
        proxy.cut_all()
        opened = run.wait_for("circuit_opened", 15, lambda e: event_time(e) >= outage_at)
        time.sleep(3.0)
        proxy.set_mode(Mode.PASS)
        run.wait_for("circuit_closed", 15, lambda e: event_time(e) > event_time(opened))
        time.sleep(1.0)
    finally:
        assert run.stop() == 0
    accounting = account(run, pg.PG_DSN)
    accounting.assert_nothing_lost()
    accounting.assert_matches(run.summary())
    assert accounting.in_backups > 1000

    dry = _replay(run, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    checked = json.loads(dry.stdout)["totals"]
    assert (checked["read"], checked["present"]) == (accounting.in_backups, accounting.in_db_and_backups)

    replay = _replay(run)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    new = accounting.in_backups - accounting.in_db_and_backups
    assert f"{accounting.in_backups} read, {new} written, {accounting.in_db_and_backups} already present" in (
        replay.stdout
    )

    ledger = ledger_rows([run.ledger])
    stored = _table(pg_table)
    assert set(stored) == set(ledger)
    wrong = [
        key
        for key, (spelled, quality) in ledger.items()
        if not (same_value(spelled, *stored[key][:2]) and stored[key][2] == quality)
    ]
    assert wrong == []

    again = _replay(run)
    assert again.returncode == 0 and "nothing to replay" in again.stdout
    assert len(_table(pg_table)) == len(ledger)
