"""Hostile and broken clients cannot hurt the collector: the real `collector run` under an open-file
limit of 64, with the database down, while hundreds of connections sit idle, dribble their requests
a byte at a time, or never read their answers.

Every value the simulator generated must be in the database or in a backup CSV (rows counted in
the real files against the simulator's ledger), nothing may be logged as lost, and the health probe
must keep answering throughout.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.evidence import read_ledger, reconcile, spool_keys, sqlite_keys
from tests.telemetry_support import free_port

ROOT = Path(__file__).resolve().parent.parent
FILE_LIMIT = 64
IDLE = 150
"""Connections that send nothing."""
SLOW = 150
"""Connections that send a request head one byte every half second, never finishing it."""
UNREAD = 20
"""Connections that ask for /metrics and never read the answer."""
OUTAGE_S = 12.0

pytestmark = pytest.mark.slow


@dataclass
class Probes:
    answered: int = 0
    failed: list[str] = field(default_factory=list)
    slowest_s: float = 0.0


def _probe_until(port: int, stop: threading.Event, probes: Probes) -> None:
    while not stop.is_set():
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                probes.answered += 1
            else:
                probes.failed.append(f"status {response.status}")
        except OSError as exc:
            if probes.answered:  # before the first answer the server is still starting
                probes.failed.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
        probes.slowest_s = max(probes.slowest_s, time.monotonic() - started)
        stop.wait(0.25)


def _attack_until(port: int, stop: threading.Event, opened: list[int]) -> None:
    """Keep IDLE idle, SLOW dribbling and UNREAD unread connections open; reopen what the server
    closes, so the pressure lasts."""
    kinds = ["idle"] * IDLE + ["slow"] * SLOW + ["unread"] * UNREAD
    socks: list[socket.socket | None] = [None] * len(kinds)
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 4000
    progress = [0] * len(kinds)
    try:
        while not stop.is_set():
            for index, kind in enumerate(kinds):
                sock = socks[index]
                if sock is None:
                    sock = socket.socket()
                    sock.settimeout(1.0)
                    try:
                        sock.connect(("127.0.0.1", port))
                    except OSError:
                        sock.close()
                        continue
                    sock.setblocking(False)
                    socks[index] = sock
                    progress[index] = 0
                    opened[0] += 1
                    if kind == "unread":
                        with contextlib.suppress(OSError):
                            sock.send(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 50)
                    continue
                try:
                    if kind == "slow" and progress[index] < len(head):
                        sock.send(head[progress[index] : progress[index] + 1])
                        progress[index] += 1
                    elif kind != "unread" and sock.recv(1024, socket.MSG_PEEK) == b"":
                        raise ConnectionResetError("closed by the server")
                except BlockingIOError:
                    pass
                except OSError:
                    sock.close()
                    socks[index] = None
            stop.wait(0.5)
    finally:
        for sock in socks:
            if sock is not None:
                sock.close()


def _start_collector(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    config = {
        "source": {"tags": 3491, "groups": 10, "interval_s": 1.0, "ledger": str(tmp_path / "ledger.csv")},
        "writer": {"max_retries": 1, "backoff_s": [0.2], "probe_interval_s": 1, "shutdown_timeout_s": 10},
        "sink": {"type": "sqlite", "path": str(tmp_path / "tags.db"), "busy_timeout_s": 0.5},
        "backup": {"dir": str(tmp_path / "backup")},
        "api": {"host": "127.0.0.1", "port": port},
    }
    (tmp_path / "collector.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTOR_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "collector", "run", "--config", str(tmp_path / "collector.yaml")]
    with open(tmp_path / "collector.log", "wb") as log:
        # As an operator would: `ulimit -n 64` (soft and hard) in the shell that starts the service.
        return subprocess.Popen(
            ["bash", "-c", f'ulimit -n {FILE_LIMIT} && exec "$0" "$@"', *command],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _assert_every_value_is_kept(tmp_path: Path, log_text: str) -> None:
    """Every generated value is in the database or in a backup file, exactly once."""
    assert "values_lost" not in log_text, "values were lost"
    found = reconcile(
        read_ledger(tmp_path / "ledger.csv"),
        sqlite_keys(tmp_path / "tags.db"),
        spool_keys([tmp_path / "backup"]),
    )
    assert found.in_backup_only > 0, "the outage sent nothing to backup"
    assert (found.missing, found.unexpected, found.database_duplicates) == (set(), set(), 0)
    assert found.in_database + found.in_backup_only == found.generated


def test_idle_and_slow_clients_under_a_low_file_limit_lose_no_value_and_leave_probes_answering(
    tmp_path: Path,
) -> None:
    port = free_port()
    process = _start_collector(tmp_path, port)
    stop = threading.Event()
    probes = Probes()
    opened = [0]
    prober = threading.Thread(target=_probe_until, args=(port, stop, probes), name="probe")
    attacker = threading.Thread(target=_attack_until, args=(port, stop, opened), name="attack")
    try:
        prober.start()
        deadline = time.monotonic() + 30
        while not (tmp_path / "tags.db").exists() or probes.answered == 0:
            assert process.poll() is None, (tmp_path / "collector.log").read_text()
            assert time.monotonic() < deadline, "the collector did not start"
            time.sleep(0.2)
        attacker.start()
        time.sleep(3)  # the attack settles in while the database still works
        lock = sqlite3.connect(tmp_path / "tags.db", isolation_level=None, timeout=10)
        try:
            lock.execute("BEGIN IMMEDIATE")  # the database is down for everyone else
            time.sleep(OUTAGE_S)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        time.sleep(3)
        answered_during_attack = probes.answered
    finally:
        stop.set()
        for thread in (prober, attacker):
            if thread.is_alive():
                thread.join(30)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(60)

    log_text = (tmp_path / "collector.log").read_text()
    assert code == 0, log_text[-3000:]
    _assert_every_value_is_kept(tmp_path, log_text)
    # The probe kept answering, promptly, through the attack and the outage.
    assert answered_during_attack >= 40, probes
    assert len(probes.failed) <= answered_during_attack // 50, probes.failed[:5]
    assert probes.slowest_s < 3.0
    # The attack was real, and the server fitted its connections to the file limit.
    assert opened[0] >= IDLE + SLOW + UNREAD, "the attack did not open its connections"
    assert "api_connections_limited" in log_text
