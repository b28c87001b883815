"""SIGKILL at many moments, restart on the same directories, and nothing accepted is lost.

The real ``collector run`` is killed (SIGKILL: no handler runs, no buffer is flushed) while writing
steadily, while SQLite is locked (batches retrying, the circuit open, the spill guard writing),
while PostgreSQL is stopped, during a graceful shutdown and during recovery itself, then started
again on the same log, database and backup directories. The evidence is the files and the table
alone: every value in the simulator's ledgers (one per run; a poll is recorded once the service
accepted it) is in the table or in a backup or rejected CSV, and no key is stored twice.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.model import parse_timestamp
from tests import pg
from tests.evidence import spool_keys, sqlite_keys
from tests.fault_harness import REPO_ROOT, CollectorRun, fast_config, read_keys, table_keys

pytestmark = pytest.mark.slow

POLL_SIZE = 350
"""The simulator's largest poll (3 491 tags in 10 groups): at most one poll per kill is accepted
but not yet in the ledger."""

Key = tuple[str, datetime]


class CrashSeries:
    """Runs of ``collector run`` on one configuration, each with its own ledger, killed or stopped."""

    def __init__(self, tmp_path: Path, config: dict[str, Any]) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.runs: list[CollectorRun] = []
        self.kills = 0

    def spawn(self, **overrides: dict[str, Any]) -> CollectorRun:
        index = len(self.runs)
        config = {section: dict(values) for section, values in self.config.items()}
        config["source"]["ledger"] = str(self.tmp_path / f"ledger-{index}.csv")
        for section, values in overrides.items():
            config[section] = {**config[section], **values}
        workdir = self.tmp_path / f"run-{index}"
        workdir.mkdir()
        path = workdir / "collector.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        (workdir / "no.env").write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTOR_", "ORACLE_"))}
        env["PYTHONPATH"] = str(REPO_ROOT)
        log_path = workdir / "collector.log"
        command = [sys.executable, "-m", "collector", "run", "--config", str(path)]
        command += ["--env-file", str(workdir / "no.env")]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        run = CollectorRun(config, workdir, process, log_path)
        self.runs.append(run)
        return run

    def started(self, **overrides: dict[str, Any]) -> CollectorRun:
        run = self.spawn(**overrides)
        run.wait_for("service_started", 60)
        return run

    def kill(self, run: CollectorRun) -> None:
        assert run.process.poll() is None, f"collector exited before the kill:\n{run.tail()}"
        run.process.send_signal(signal.SIGKILL)
        run.process.wait(10)
        self.kills += 1

    def kill_on(self, run: CollectorRun, event: str, timeout_s: float = 60.0) -> None:
        """Kill the moment ``event`` is logged (the log is read every few milliseconds)."""
        deadline = time.monotonic() + timeout_s
        marker = f'"event": "{event}"'
        while marker not in run.log_path.read_text(encoding="utf-8", errors="replace"):
            assert run.process.poll() is None, f"collector exited before {event}:\n{run.tail()}"
            assert time.monotonic() < deadline, f"no {event} within {timeout_s} s:\n{run.tail()}"
            time.sleep(0.003)
        self.kill(run)

    def kill_after(self, run: CollectorRun, seconds: float) -> None:
        time.sleep(seconds)
        self.kill(run)

    def finish(self, seconds: float = 2.0) -> dict[str, Any]:
        """A last run that recovers, writes and stops gracefully; returns its shutdown summary."""
        run = self.started()
        time.sleep(seconds)
        assert run.stop(timeout_s=60) == 0, run.tail()
        summary = run.summary()
        assert summary["balanced"] is True, summary
        return summary

    def generated(self) -> set[Key]:
        keys: set[Key] = set()
        for run in self.runs:
            if run.ledger.exists():
                keys.update((name, parse_timestamp(stamp)) for name, stamp in read_keys(run.ledger))
        return keys

    @property
    def backup_dirs(self) -> list[Path]:
        return [Path(self.config["backup"]["dir"])]

    @property
    def wal_dir(self) -> Path:
        return Path(self.config["wal"]["dir"])


def assert_nothing_lost(series: CrashSeries, stored: Counter[Key]) -> None:
    generated = series.generated()
    backed_up = spool_keys(series.backup_dirs, "backup")
    rejected = spool_keys(series.backup_dirs, "rejected")
    somewhere = set(stored) | set(backed_up) | set(rejected)
    missing = generated - somewhere
    assert not missing, (
        f"{len(missing)} of {len(generated)} generated values lost, e.g. {sorted(missing)[:3]}"
    )
    twice = {key: count for key, count in stored.items() if count > 1}
    assert not twice, f"keys stored twice: {list(twice.items())[:3]}"
    unknown = somewhere - generated
    assert len(unknown) <= series.kills * POLL_SIZE, f"{len(unknown)} values nobody generated"
    assert generated and series.kills > 0
    # A graceful stop with every value settled leaves an empty log.
    assert not list(series.wal_dir.glob("*.wal")), sorted(series.wal_dir.iterdir())


def sqlite_config(tmp_path: Path, **sink: Any) -> dict[str, Any]:
    config = fast_config(tmp_path, "TAG_DATA", 0)
    config["sink"] = {"type": "sqlite", "path": str(tmp_path / "data" / "tags.db"), **sink}
    config["wal"] = {"dir": str(tmp_path / "data" / "wal")}
    return config


@contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Another process's long write transaction, as a maintenance job would hold it."""
    lock = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN IMMEDIATE")
        yield
        lock.execute("ROLLBACK")
    finally:
        lock.close()


def test_killed_while_writing_to_sqlite(tmp_path: Path) -> None:
    series = CrashSeries(tmp_path, sqlite_config(tmp_path))
    chance = random.Random(11)
    for _ in range(5):
        series.kill_after(series.started(), chance.uniform(0.2, 2.0))
    series.finish()
    assert_nothing_lost(series, sqlite_keys(tmp_path / "data" / "tags.db"))


def test_killed_while_sqlite_is_locked_retrying_backing_up_spilling_and_recovering(tmp_path: Path) -> None:
    # A locked database fails fast (busy timeout 0.2 s); the default backoff (1, 2, 4 s) keeps
    # batches in the retry queue for 7 s before the circuit opens.
    series = CrashSeries(tmp_path, sqlite_config(tmp_path, busy_timeout_s=0.2))
    series.config["writer"]["backoff_s"] = [1, 2, 4]
    database = tmp_path / "data" / "tags.db"
    run = series.started()
    time.sleep(1.0)
    with sqlite_locked(database):
        run.wait_for("write_failed", 10)
        series.kill_after(run, 0.3)  # the first batches wait in the retry queue
        run = series.started()  # restarted while locked: the circuit opens at start
        time.sleep(1.0)
        series.kill(run)
    run = series.started()
    time.sleep(1.0)
    with sqlite_locked(database):
        run.wait_for("write_failed", 10)
        series.kill_after(run, 4.0)  # about 14 000 values wait in the retry queue
        # Restart on a log that holds more than the buffer: the feed waits for room while the
        # writers back values up. Kill the moment it begins, twice, then once after it.
        during = 0
        for _ in range(2):
            run = series.spawn()
            series.kill_on(run, "wal_recovering")
            during += not run.events("wal_recovered")
        assert during >= 1, "no kill landed while recovered values were being fed"
        run = series.spawn()
        run.wait_for("wal_recovered", 60)
        series.kill_after(run, 0.3)
    # A database that hangs instead of failing (busy timeout 4 s): the writers wait in the call,
    # the buffer fills and the spill guard saves the oldest values to backup.
    run = series.started(sink={"busy_timeout_s": 4.0})
    time.sleep(1.0)
    with sqlite_locked(database):
        run.wait_for("buffer_spill", 20)
        series.kill_after(run, 0.3)
        run = series.started(sink={"busy_timeout_s": 4.0})  # and again while it still hangs
        series.kill_after(run, 0.5)
    series.finish(3.0)
    assert series.kills == 8
    assert_nothing_lost(series, sqlite_keys(database))


def test_killed_during_shutdown(tmp_path: Path) -> None:
    series = CrashSeries(tmp_path, sqlite_config(tmp_path, busy_timeout_s=0.2))
    database = tmp_path / "data" / "tags.db"
    for delay in (0.0, 0.05):
        run = series.started()
        time.sleep(1.5)
        run.process.send_signal(signal.SIGTERM)
        series.kill_after(run, delay)
    run = series.started()
    time.sleep(0.5)
    with sqlite_locked(database):  # a shutdown that must save everything to backup
        run.wait_for("write_failed", 10)
        run.process.send_signal(signal.SIGTERM)
        run.wait_for("signal_received", 10)
        series.kill_after(run, 0.1)
    series.finish()
    assert_nothing_lost(series, sqlite_keys(database))


@pytest.mark.postgres
def test_killed_while_postgresql_is_stopped(
    tmp_path: Path, pg_table: str, postgres_server: pg.ServerControl
) -> None:
    if not postgres_server.can_control():
        pytest.skip("this machine's PostgreSQL cluster cannot be stopped by the tests")
    config = fast_config(tmp_path, pg_table, 5432)
    config["wal"] = {"dir": str(tmp_path / "wal")}
    series = CrashSeries(tmp_path, config)
    series.kill_after(series.started(), 1.5)  # steady writing
    run = series.started()
    time.sleep(1.0)
    with postgres_server.stopped():
        run.wait_for("write_failed", 20)
        series.kill_after(run, 0.3)  # retrying
        run = series.started()  # starts with the database down: recovered values go to backup
        series.kill_after(run, 2.0)
        run = series.started()
        series.kill_after(run, 1.0)
    series.finish(3.0)
    stored = Counter((name, parse_timestamp(stamp)) for name, stamp in table_keys(pg_table, pg.PG_DSN))
    assert series.kills == 4
    assert_nothing_lost(series, stored)
