"""Two `collector run` processes split one plant through an MQTT shared subscription into
PostgreSQL; one is killed with SIGKILL mid-run and started again. The publisher's ledger is
reconciled against the table and the backup files.

The plant is `collector simulate --mqtt` at 3 491 values/s (10 polls a second). Every message is
acknowledged only after the collector's accept call returned, so the broker keeps, in the killed
collector's session, everything it had not accepted, and hands it over when it comes back under the
same client id; redelivered values are stored once (the key) and counted as duplicates.

What the killed process had accepted but not yet written is exactly what its write-ahead log keeps:
with the log on, the ledger must equal the table plus the backup files. Without it (a build whose
accept call ends in memory), what the kill can take is bounded by what one process holds in memory,
and the test holds the loss to that bound and to the seconds before the kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.evidence import Key, read_ledger, reconcile, spool_keys
from tests.mqtt_support import clear_session, unique
from tests.pg import PG_DSN
from tests.telemetry_support import free_port
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.usefixtures("mqtt_broker")]

ROOT = Path(__file__).resolve().parents[1]
RATE_TAGS = 3491
PUBLISH_S = 14.0
KILL_AT_S = 5.0
DOWN_FOR_S = 2.0
BUFFER = 10_000
BATCH = 500
WORKERS = 2


class Collector:
    """One `collector run` in its own directory (its backups and write-ahead log live there)."""

    def __init__(self, workdir: Path, name: str, table: str, topic: str, group: str) -> None:
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True)
        self.client_id = unique(name)
        self.port = free_port()
        config = {
            "source": {
                "type": "mqtt",
                "host": "127.0.0.1",
                "topics": [f"{topic}/#"],
                "shared_group": group,
                "client_id": self.client_id,
                "session_expiry_s": 300,
                "reconnect_max_s": 2,
            },
            "sink": {"type": "postgresql", "dsn": PG_DSN, "table": table},
            "buffer": {"max_size": BUFFER},
            "writer": {"batch_size": BATCH, "workers": WORKERS},
            "backup": {"dir": str(self.workdir / "backup")},
            "api": {"host": "127.0.0.1", "port": self.port},
        }
        (self.workdir / "collector.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTOR_", "OTEL_"))}
        env["PYTHONPATH"] = str(ROOT)
        log = self.workdir / f"run{self.runs}.log"
        with open(log, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "collector", "run", "--no-env-file", "--config", "collector.yaml"],
                cwd=self.workdir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        wait_until(self._subscribed, 30, what=f"{self.workdir.name} subscribed", process=self.process)

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/status", timeout=5) as response:
            document: dict[str, Any] = json.load(response)
            return document

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def mqtt(self) -> dict[str, Any]:
        return next(i for i in self.status()["source"]["inputs"] if i["kind"] == "mqtt")

    def _subscribed(self) -> bool:
        try:
            return bool(self.mqtt()["state"] == "connected")
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise
        return self.process.returncode


def _table_keys(table: str) -> Counter[Key]:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        rows = conn.execute(f"SELECT tag_name, timestamp FROM {table}").fetchall()  # type: ignore[arg-type]
    return Counter((str(name), stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)) for name, stamp in rows)


def _publish(tmp_path: Path, topic: str, ledger: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTOR_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    with open(tmp_path / "publisher.log", "wb") as err:
        return subprocess.Popen(
            [
                sys.executable, "-m", "collector", "simulate", "--no-env-file",
                "--mqtt", "127.0.0.1:1883", "--topic-prefix", topic, "--client-id", unique("plant"),
                "--tags", str(RATE_TAGS), "--groups", "10", "--interval", "1",
                "--duration", str(PUBLISH_S), "--ledger", str(ledger),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )  # fmt: skip


def test_two_collectors_share_a_plant_and_a_killed_one_loses_nothing_it_acknowledged(
    tmp_path: Path, pg_table: str
) -> None:
    topic = f"plant-{unique('e2e')}"
    group = unique("collectors")
    a = Collector(tmp_path, "a", pg_table, topic, group)
    b = Collector(tmp_path, "b", pg_table, topic, group)
    ledger_path = tmp_path / "ledger.csv"
    publisher: subprocess.Popen[bytes] | None = None
    try:
        a.start()
        b.start()
        durable = "\ncollector_wal_enabled 1.0\n" in a.metrics()
        publisher = _publish(tmp_path, topic, ledger_path)
        time.sleep(KILL_AT_S)
        # Both members of the group take a share of the plant.
        assert a.mqtt()["values"] > 0 and b.mqtt()["values"] > 0
        killed_at = datetime.now(UTC)
        a.kill()
        time.sleep(DOWN_FOR_S)
        a.start()
        out, _ = publisher.communicate(timeout=PUBLISH_S + 60)
        assert publisher.returncode == 0, out  # the broker acknowledged every message
        ledger = read_ledger(ledger_path)
        assert len(ledger) >= RATE_TAGS * (PUBLISH_S - 2)
        backups = [a.workdir / "backup", b.workdir / "backup"]

        def settled() -> bool:
            stored = len(_table_keys(pg_table)) + sum(spool_keys(backups).values())
            return stored >= len(ledger) - (0 if durable else BUFFER + WORKERS * BATCH)

        wait_until(settled, 60, what="the table and the backups to hold the ledger")
        time.sleep(3)  # let redeliveries and the last batches land
        # The restarted member took what its session kept while it was away.
        assert a.mqtt()["values"] > 0
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
        codes = [c.stop() for c in (a, b) if c.process is not None]
        for c in (a, b):
            clear_session(c.client_id)
    assert codes == [0, 0]

    database = _table_keys(pg_table)
    result = reconcile(ledger, database, spool_keys(backups))
    assert result.unexpected == set()
    assert result.database_duplicates == 0  # the key: a redelivered value is stored once
    both = set(database) & set(spool_keys(backups))
    assert not both, f"{len(both)} keys are in the table and in a backup file"
    assert all(count == 1 for count in spool_keys(backups).values()), "a key twice in the backup files"
    if durable:
        assert result.missing == set(), f"{result.lost} acknowledged values lost"
    else:
        # Memory only: the kill takes what process a held, and nothing else.
        assert result.lost <= BUFFER + WORKERS * BATCH, f"{result.lost} of {len(ledger)} lost"
        window = timedelta(seconds=10)
        assert all(killed_at - window <= stamp <= killed_at for _tag, stamp in result.missing)
