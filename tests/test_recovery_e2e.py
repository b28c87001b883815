"""Recovery end to end: backups made by a real outage, listed and replayed by the real command,
and the database then holding exactly what the simulator generated."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import load_config
from collector.service import CollectorService
from collector.sinks import build_sink
from tests.evidence import read_ledger, reconcile, spool_keys, sqlite_keys
from tests.recovery_support import (
    REPO_ROOT,
    OutageSink,
    assert_table_matches,
    expected_rows,
    ledger_rows,
    sample_values,
    table_rows,
    write_backup,
)

pytestmark = pytest.mark.slow


def _write_config(tmp_path: Path, **source: Any) -> Path:
    config = {
        "source": {
            "type": "simulator",
            "groups": 4,
            "tags_per_group": 25,
            "interval_s": 0.1,
            "seed": 3,
            **source,
        },
        "writer": {
            "batch_size": 200,
            "flush_interval_s": 0.1,
            "backoff_s": [0.05, 0.05, 0.05],
            "probe_interval_s": 0.3,
            "shutdown_timeout_s": 5,
        },
        "sink": {"type": "sqlite", "path": str(tmp_path / "data" / "tags.db")},
        "backup": {"dir": str(tmp_path / "backup"), "idle_close_s": 0.5},
        "api": {"enabled": False},
    }
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _collector(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("COLLECTOR_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_outage_replayed_leaves_the_database_holding_exactly_what_was_generated(tmp_path: Path) -> None:
    config_path = _write_config(tmp_path, ledger=str(tmp_path / "ledger.csv"), bad_ratio=0.05)
    config = load_config(config_path, environ={}, env_file=None)
    db = Path(config.sink.path)  # type: ignore[union-attr]
    sink = OutageSink(build_sink(config.sink))
    service = CollectorService(config, sink=sink)
    service.start()
    try:
        time.sleep(0.8)
        sink.down(lose_acks=2)  # two batches commit, then the connection drops before the answer
        time.sleep(1.5)
        sink.up()
        time.sleep(1.0)
    finally:
        snapshot = service.stop().snapshot
    ledger = ledger_rows([tmp_path / "ledger.csv"])
    terms = snapshot.terms()
    assert snapshot.balanced() and len(ledger) == snapshot.accepted
    assert terms["overflow_dropped"] == terms["lost"] == terms["rejected"] == 0
    assert terms["backed_up"] > 1000 and terms["written"] > 1000
    unacknowledged = expected_rows(sink.committed_unacknowledged)
    assert unacknowledged and len(table_rows(db)) == terms["written"] + len(unacknowledged)
    # Before the replay: every generated value is in the table or in a backup file.
    before = reconcile(
        read_ledger(tmp_path / "ledger.csv"), sqlite_keys(db), spool_keys([tmp_path / "backup"])
    )
    assert before.lost == 0 and not before.unexpected and before.database_duplicates == 0
    assert before.in_backup_only == terms["backed_up"] - len(unacknowledged)

    listing = _collector("backups", "--config", str(config_path), "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    totals = json.loads(listing.stdout)["totals"]["backup"]
    assert totals["rows"] == terms["backed_up"] and totals["files"] >= 1

    dry = _collector("replay", "--config", str(config_path), "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    checked = json.loads(dry.stdout)["totals"]
    assert (checked["written"], checked["present"]) == (
        terms["backed_up"] - len(unacknowledged),
        len(unacknowledged),
    )
    assert len(table_rows(db)) == terms["written"] + len(unacknowledged)

    replay = _collector("replay", "--config", str(config_path), cwd=tmp_path)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "every file replayed: all rows are in the database." in replay.stdout
    assert (
        f"{terms['backed_up']} read, {checked['written']} written, {len(unacknowledged)} already present"
        in (replay.stdout)
    )
    assert_table_matches(db, ledger)

    again = _collector("replay", "--config", str(config_path), cwd=tmp_path)
    assert again.returncode == 0 and "nothing to replay" in again.stdout
    assert_table_matches(db, ledger)
    assert not list((tmp_path / "backup").glob("backup_*.csv"))
    assert len(list((tmp_path / "backup" / "replayed").glob("backup_*.csv"))) == totals["files"]


def has_rows(db: Path) -> bool:
    """Whether the service has written yet. It opens the file before it creates the table, so a
    file without the table is a service still starting."""
    try:
        return db.exists() and bool(table_rows(db))
    except sqlite3.OperationalError:
        return False


def test_replay_while_the_service_writes_to_the_same_database(tmp_path: Path) -> None:
    config_path = _write_config(tmp_path, ledger=str(tmp_path / "ledger.csv"), groups=2, tags_per_group=50)
    db = tmp_path / "data" / "tags.db"
    old = sample_values(20_000)  # an earlier outage's backup, in its own directory
    write_backup(tmp_path / "earlier", old)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    service = subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--config", str(config_path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not has_rows(db):
            assert service.poll() is None and time.monotonic() < deadline, "the service did not start writing"
            time.sleep(0.1)
        replay = _collector("replay", "--config", str(config_path), str(tmp_path / "earlier"), cwd=tmp_path)
        assert service.poll() is None, "the service stopped during the replay"
        assert replay.returncode == 0, replay.stdout + replay.stderr
    finally:
        service.send_signal(signal.SIGTERM)
        _, errors = service.communicate(timeout=60)
    assert service.returncode == 0, errors
    # Had the service met a locked database it would have backed values up: replay those too.
    leftover = _collector("replay", "--config", str(config_path), cwd=tmp_path)
    assert leftover.returncode == 0, leftover.stdout
    assert_table_matches(db, expected_rows(old) | ledger_rows([tmp_path / "ledger.csv"]))


def test_exit_codes_and_reports_a_script_can_use(tmp_path: Path) -> None:
    config_path = _write_config(tmp_path)
    backup = tmp_path / "backup"
    values = sample_values(30)
    damaged = write_backup(backup, values)
    damaged.write_text(damaged.read_text(encoding="utf-8") + "half a line\n", encoding="utf-8")

    missing = _collector("replay", "--config", str(config_path), str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2 and "no such file or directory" in missing.stderr

    listing = _collector("backups", "--config", str(config_path), cwd=tmp_path)
    assert listing.returncode == 0
    assert "backup           31" in listing.stdout and "2026-03-01 08:00:00 .. 08:00:00" in listing.stdout
    assert "to load the backup files into the database: collector replay" in listing.stdout

    replay = _collector("replay", "--config", str(config_path), cwd=tmp_path)
    assert replay.returncode == 4, replay.stdout + replay.stderr
    (rejected,) = backup.glob("rejected_*.csv")
    assert f"rejected rows with their line numbers: {rejected.relative_to(tmp_path)}" in replay.stdout
    assert "line 32: expected 5 fields, found 1" in rejected.read_text(encoding="utf-8")
    assert_table_matches(tmp_path / "data" / "tags.db", expected_rows(values))

    listing = _collector("backups", "--config", str(config_path), "--json", cwd=tmp_path)
    totals = json.loads(listing.stdout)["totals"]
    assert (totals["backup"]["files"], totals["rejected"]["files"], totals["rejected"]["rows"]) == (0, 1, 1)

    broken = tmp_path / "broken.yaml"
    broken.write_text(
        config_path.read_text(encoding="utf-8").replace("type: sqlite", "type: nosuch"), "utf-8"
    )
    bad_config = _collector("replay", "--config", str(broken), cwd=tmp_path)
    assert bad_config.returncode == 2 and "sink" in bad_config.stderr
