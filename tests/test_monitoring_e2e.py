"""The monitoring stack against the real thing: `collector run` scraped by a real Prometheus.

Prometheus runs on loopback with the project's own scrape configuration and alert rules (the target
rewritten to the test's collector, the intervals shortened). Every dashboard panel expression and
every alert expression is evaluated through Prometheus's HTTP API; then another process takes
SQLite's write lock (a maintenance job's long transaction) and the database alerts go pending.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ci import require_program
from tests.evidence import read_ledger, reconcile, spool_keys, sqlite_keys
from tests.telemetry_support import free_port

ROOT = Path(__file__).resolve().parent.parent
RATE_INTERVAL = "15s"

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


def _require_prometheus() -> str:
    return require_program("prometheus", package="prometheus")


def _get_json(url: str, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.load(response)


def _wait(what: str, check: Callable[[], bool], timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} while waiting for {what}")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    return process.returncode


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> dict[str, Any]:
        params = urllib.parse.urlencode({"query": expr})
        try:
            data: dict[str, Any] = _get_json(f"{self.url}/api/v1/query?{params}")
        except urllib.error.HTTPError as exc:  # 400 for an expression that does not parse
            data = json.load(exc)
        return data

    def alerts(self) -> dict[str, str]:
        return {
            a["labels"]["alertname"]: a["state"]
            for a in _get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
        }


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    port = free_port()
    config = {
        "source": {
            "groups": 5,
            "tags_per_group": 100,
            "interval_s": 0.5,
            "ledger": str(tmp_path / "ledger.csv"),
        },
        "writer": {"max_retries": 1, "backoff_s": [0.2], "probe_interval_s": 1, "shutdown_timeout_s": 5},
        "sink": {"type": "sqlite", "path": str(tmp_path / "tags.db"), "busy_timeout_s": 0.2},
        "backup": {"dir": str(tmp_path / "backup")},
        "api": {"host": "127.0.0.1", "port": port},
    }
    (tmp_path / "collector.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTOR_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    # Traces on (printed and thrown away), so the histograms carry trace ids as exemplars.
    env["OTEL_TRACES_EXPORTER"] = "console"
    process = subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--config", str(tmp_path / "collector.yaml")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "collector.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    try:
        yield process, tmp_path, port
    finally:
        _stop(process)


@pytest.fixture
def prometheus(collector: tuple[subprocess.Popen[bytes], Path, int], tmp_path: Path) -> Iterator[Prom]:
    binary = _require_prometheus()
    _, _, collector_port = collector
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [str(ROOT / "prometheus" / rule) for rule in config["rule_files"]]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "collector"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{collector_port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait("prometheus ready", lambda: urllib.request.urlopen(f"{url}/-/ready").status == 200, 30, process)
        yield Prom(url)
    finally:
        _stop(process)


def _panel_expressions() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"]))
    return found


def _alert_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load((ROOT / "prometheus" / "alerts.yml").read_text())
    return [(r["alert"], r["expr"]) for group in rules["groups"] for r in group["rules"]]


def test_dashboards_and_alerts_work_against_a_real_prometheus(
    collector: tuple[subprocess.Popen[bytes], Path, int], prometheus: Prom
) -> None:
    process, workdir, port = collector
    instance = f"127.0.0.1:{port}"
    # As Grafana interpolates a regex variable into a PromQL string: regex-escaped, backslashes doubled.
    instance_regex = re.escape(instance).replace("\\", "\\\\")
    _wait(
        "six scrapes of a ready collector",
        lambda: (
            prometheus.query(
                'sum(count_over_time(up{job="collector"}[1m])) >= 6 and sum(up{job="collector"}) == 1'
            )["data"]["result"]
            != []
        ),
        60,
        process,
    )

    empty = []
    for name, expr in _panel_expressions():
        concrete = expr.replace("$instance", instance_regex).replace("$__rate_interval", RATE_INTERVAL)
        answer = prometheus.query(concrete)
        assert answer["status"] == "success", f"{name}: {answer.get('error')}\n{concrete}"
        if not answer["data"]["result"]:
            empty.append(f"{name}: {concrete}")
    assert not empty, "panels without data:\n" + "\n".join(empty)

    for name, expr in _alert_expressions():
        answer = prometheus.query(expr)
        assert answer["status"] == "success", f"{name}: {answer.get('error')}"
    groups = _get_json(f"{prometheus.url}/api/v1/rules")["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {name for name, _ in _alert_expressions()}
    assert all(r["health"] == "ok" for r in loaded.values()), loaded
    assert prometheus.alerts() == {}, "a healthy collector raises no alert"
    # A slow write's trace is one click away: the latency histogram's exemplars carry trace ids.
    now = time.time()
    params = urllib.parse.urlencode(
        {"query": "collector_write_duration_seconds_bucket", "start": now - 60, "end": now}
    )
    exemplars = _get_json(f"{prometheus.url}/api/v1/query_exemplars?{params}")["data"]
    trace_ids = {e["labels"]["trace_id"] for series in exemplars for e in series["exemplars"]}
    assert trace_ids and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids)

    # The outage: another process holds SQLite's write lock, as a long maintenance transaction would.
    lock = sqlite3.connect(workdir / "tags.db", isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        expected = {"CollectorDatabaseDown", "CollectorBackupFilesWaiting", "CollectorWriteSuccessRateLow"}
        _wait(
            f"{sorted(expected)} pending",
            lambda: all(prometheus.alerts().get(name) == "pending" for name in expected),
            45,
            process,
        )
        active = prometheus.alerts()
        for quiet in (
            "CollectorDown",
            "CollectorBufferOverflow",
            "CollectorValuesLost",
            "CollectorBackupWriteFailing",
        ):
            assert quiet not in active, active
        status = _get_json(f"http://{instance}/api/v1/status")
        assert status["circuit"]["state"] == "open"
        assert "CollectorDatabaseDown" in [a["name"] for a in status["alerts"]]
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    assert _stop(process) == 0
    # Nothing was lost: every generated value is in the database or in a backup file, once.
    found = reconcile(
        read_ledger(workdir / "ledger.csv"),
        sqlite_keys(workdir / "tags.db"),
        spool_keys([workdir / "backup"]),
    )
    assert found.in_backup_only > 0
    assert (found.missing, found.unexpected, found.database_duplicates) == (set(), set(), 0)
    assert found.in_database + found.in_backup_only == found.generated
