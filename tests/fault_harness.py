"""Runs ``collector run`` as an operator would, and counts where every generated value went.

A :class:`CollectorRun` is one subprocess with its own configuration file, simulator ledger, backup
directories and JSON log. :func:`account` reads the ledger (every value the simulator generated),
the table, and every backup and rejected CSV, and compares them as sets of (tag_name, timestamp)
keys: the service's own counters are checked against those files, never trusted instead of them.

With ``FAULT_MATRIX=<file>`` in the environment each case appends its figures there as a JSON line
(that is how the matrix in docs/reliability.md is produced).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import yaml

from collector.model import format_timestamp

REPO_ROOT = Path(__file__).resolve().parents[1]
RATE_TAGS = 3491
"""The specification's plant (SC-005): 3 491 tags polled every second."""

Key = tuple[str, str]
Event = dict[str, Any]


def fast_config(tmp_path: Path, table: str, port: int, **overrides: dict[str, Any]) -> dict[str, Any]:
    """A configuration with short timeouts and retry delays, so each fault plays out in seconds
    while going through the same states as with the defaults (retry, backup, circuit, probe)."""
    config: dict[str, Any] = {
        "source": {
            "type": "simulator",
            "tags": RATE_TAGS,
            "groups": 10,
            "interval_s": 1.0,
            "ledger": str(tmp_path / "ledger.csv"),
        },
        "buffer": {"max_size": 10_000},
        "writer": {
            "batch_size": 500,
            "flush_interval_s": 0.5,
            "max_retries": 3,
            "backoff_s": [0.2, 0.4, 0.8],
            "workers": 2,
            "probe_interval_s": 1.0,
            "shutdown_timeout_s": 5.0,
        },
        "sink": {
            "type": "postgresql",
            "host": "127.0.0.1",
            "port": port,
            "dbname": "test",
            "user": "postgres",
            "table": table,
            "application_name": f"collector-{table}",
            "connect_timeout_s": 2,
            "call_timeout_s": 1.0,
            "pool_wait_timeout_s": 1.0,
        },
        "backup": {"dir": str(tmp_path / "backup"), "idle_close_s": 5.0},
        "api": {"enabled": False},
        "logging": {"level": "INFO", "format": "json"},
    }
    for section, values in overrides.items():
        config[section] = {**config[section], **values}
    return config


@dataclass
class CollectorRun:
    """One ``collector run`` subprocess."""

    config: dict[str, Any]
    workdir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def ledger(self) -> Path:
        return Path(self.config["source"]["ledger"])

    @property
    def table(self) -> str:
        return str(self.config["sink"]["table"])

    @property
    def backup_dirs(self) -> list[Path]:
        backup = self.config["backup"]
        return [Path(backup["dir"])] + ([Path(backup["fallback_dir"])] if backup.get("fallback_dir") else [])

    def events(self, name: str | None = None) -> list[Event]:
        found: list[Event] = []
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if name is None or event.get("event") == name:
                found.append(event)
        return found

    def wait_for(self, name: str, timeout_s: float, where: Callable[[Event], bool] = lambda _: True) -> Event:
        """The first logged ``name`` event that satisfies ``where``; fails after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self.events(name):
                if where(event):
                    return event
            if self.process.poll() is not None:
                raise AssertionError(
                    f"collector exited ({self.process.returncode}) before {name}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {name} event within {timeout_s} s:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit; a collector that does not exit in time fails the test."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"collector did not exit within {timeout_s} s of {sig.name}:\n{self.tail()}"
            ) from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def summary(self) -> Event:
        """The shutdown_complete event: the service's own count of where every value went."""
        events = self.events("shutdown_complete")
        assert events, f"no shutdown_complete event:\n{self.tail()}"
        return events[-1]


def start_collector(
    workdir: Path, config: dict[str, Any], argv: Iterable[str] = (), *, wrapper: list[str] | None = None
) -> CollectorRun:
    """Start ``collector run`` on ``config``; returns once the service has logged its start."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "collector.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    log_path = workdir / "collector.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith(("COLLECTOR_", "ORACLE_"))}
    command = [
        sys.executable,
        *(wrapper or ["-m", "collector"]),
        "run",
        "--config",
        str(config_path),
        "--no-env-file",
        *argv,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    run = CollectorRun(config, workdir, process, log_path)
    run.wait_for("service_started", 30)
    return run


# ---------------------------------------------------------------------- accounting


@dataclass
class Accounting:
    """Where the generated values are, counted from the files and the table themselves."""

    generated: int
    in_db: int
    in_backups: int
    in_rejected: int
    lost: int
    db_twice: int
    """Keys stored more than once in the table (the primary key makes this 0)."""
    backup_twice: int
    """Keys saved more than once in backups."""
    in_db_and_backups: int
    """Keys both stored and backed up: a batch whose commit succeeded but whose acknowledgement
    was lost, then ran out of retries and went to backup. Not a loss and not a double row; a
    replay counts them as duplicates."""
    unknown: int
    """Keys in the table or the files that the simulator never generated."""
    lost_keys: set[Key] = field(repr=False)

    def assert_nothing_lost(self) -> None:
        assert self.generated > 0
        assert (self.db_twice, self.backup_twice, self.unknown) == (0, 0, 0), self
        assert self.lost == 0, self
        assert self.in_db + self.in_backups + self.in_rejected - self.in_db_and_backups == self.generated, (
            self
        )

    def assert_matches(self, summary: Event) -> None:
        """The service's counters agree with what is really in the table and the files. The
        table starts empty and no key is generated twice, so every duplicate the service counted
        is a row an attempt committed without hearing so, and every stored row the service did not
        count as written or duplicate is one it backed up after such a lost acknowledgement."""
        assert summary["balanced"] is True, summary
        assert summary["written"] + summary["duplicate"] == self.in_db - self.in_db_and_backups, (
            summary,
            self,
        )
        assert summary["backed_up"] == self.in_backups, (summary, self)
        assert summary["rejected"] == self.in_rejected, (summary, self)
        assert summary["overflow_dropped"] + summary["lost"] == self.lost, (summary, self)


def read_keys(path: Path) -> list[Key]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        name, stamp = header.index("tag_name"), header.index("timestamp")
        return [(row[name], row[stamp]) for row in reader]


def spool_keys(directories: Iterable[Path], prefix: str) -> list[Key]:
    keys: list[Key] = []
    for directory in directories:
        for path in sorted(directory.glob(f"{prefix}_*.csv")):
            keys.extend(read_keys(path))
    return keys


def table_keys(table: str, dsn: str) -> list[Key]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(f"SELECT tag_name, timestamp FROM {table}").fetchall()  # type: ignore[arg-type]
    return [(str(name), format_timestamp(stamp)) for name, stamp in rows]  # type: ignore[arg-type]


def account(run: CollectorRun, dsn: str) -> Accounting:
    generated = read_keys(run.ledger)
    assert len(set(generated)) == len(generated), "the simulator generated a key twice"
    stored = table_keys(run.table, dsn)
    backed_up = spool_keys(run.backup_dirs, "backup")
    rejected = spool_keys(run.backup_dirs, "rejected")
    ledger, db, backups, refused = set(generated), set(stored), set(backed_up), set(rejected)
    somewhere = db | backups | refused
    return Accounting(
        generated=len(ledger),
        in_db=len(db),
        in_backups=len(backups),
        in_rejected=len(refused),
        lost=len(ledger - somewhere),
        db_twice=sum(count - 1 for count in Counter(stored).values()),
        backup_twice=sum(count - 1 for count in Counter(backed_up).values()),
        in_db_and_backups=len(db & backups),
        unknown=len(somewhere - ledger),
        lost_keys=ledger - somewhere,
    )


def record(case: str, accounting: Accounting, **extra: Any) -> None:
    """Append the case's figures to $FAULT_MATRIX, if set."""
    target = os.environ.get("FAULT_MATRIX")
    if not target:
        return
    row = {k: v for k, v in asdict(accounting).items() if k != "lost_keys"}
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"case": case, **row, **extra}) + "\n")


def event_time(event: Event) -> float:
    """The wall-clock time of a logged event."""
    return datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
