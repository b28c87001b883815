"""`collector run` as an operator runs it: a real process, real signals, real files."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.evidence import read_ledger, reconcile, spool_keys, sqlite_keys

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def start(tmp_path: Path, config: dict, *args: str) -> subprocess.Popen[str]:
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith(("COLLECTOR_", "ORACLE_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--config", str(path), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def base_config(tmp_path: Path, **overrides: dict) -> dict:
    config = {
        "source": {"type": "simulator", "tags": 3491, "groups": 10, "ledger": str(tmp_path / "ledger.csv")},
        "sink": {"type": "sqlite", "path": str(tmp_path / "data" / "tags.db")},
        "backup": {"dir": str(tmp_path / "backup")},
        "api": {"enabled": False},
    }
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def test_run_for_a_duration_writes_everything_and_exits_zero(tmp_path):
    proc = start(tmp_path, base_config(tmp_path), "--duration", "3")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    ledger = read_ledger(tmp_path / "ledger.csv")
    db = sqlite_keys(tmp_path / "data" / "tags.db")
    assert len(ledger) >= 3491 * 2
    assert set(db) == set(ledger) and db.total() == len(ledger)
    assert "event=service_started" in err
    assert "event=shutdown_complete" in err and "balanced=True" in err
    # Plant data is owner-only, whichever code created it (files.mode, 0600 and 0700 by default).
    created = list((tmp_path / "data").rglob("*"))
    assert tmp_path / "data" / "tags.db" in created
    assert all(_mode(p) == (0o700 if p.is_dir() else 0o600) for p in [tmp_path / "data", *created]), {
        str(p): oct(_mode(p)) for p in created
    }


def test_sigterm_during_an_outage_backs_up_every_buffered_value_and_exits_zero(tmp_path):
    blocker = tmp_path / "unmounted"
    blocker.write_text("")
    config = base_config(
        tmp_path,
        sink={"path": str(blocker / "tags.db")},
        writer={"probe_interval_s": 1.0},
        wal={"dir": str(tmp_path / "wal")},  # the log is not on the lost volume
    )
    proc = start(tmp_path, config)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "ledger.csv").exists() or (tmp_path / "ledger.csv").stat().st_size < 200_000:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    ledger = read_ledger(tmp_path / "ledger.csv")
    found = reconcile(ledger, sqlite_keys_or_empty(blocker / "tags.db"), spool_keys([tmp_path / "backup"]))
    assert found.missing == set() and found.unexpected == set()
    assert found.in_backup_only == len(ledger)
    assert "event=signal_received" in err and "signal=SIGTERM" in err
    assert "event=shutdown_started" in err and "pending=" in err
    assert "event=sink_unavailable_at_start" in err
    backups = list((tmp_path / "backup").iterdir())
    assert backups and _mode(tmp_path / "backup") == 0o700
    assert all(_mode(p) == 0o600 for p in backups)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_sigint_stops_gracefully_too(tmp_path):
    proc = start(tmp_path, base_config(tmp_path, source={"tags": 100}))
    try:
        # Interrupt a running service, not one still importing (a loaded machine starts slowly).
        deadline = time.monotonic() + 30
        while not (tmp_path / "ledger.csv").exists() or (tmp_path / "ledger.csv").stat().st_size < 10_000:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    ledger = read_ledger(tmp_path / "ledger.csv")
    assert set(sqlite_keys(tmp_path / "data" / "tags.db")) == set(ledger)


def sqlite_keys_or_empty(path: Path):
    from collections import Counter

    return sqlite_keys(path) if path.exists() else Counter()
