"""The monitoring stack against the real thing: `collector run` scraped by a real Prometheus, whose
alerts go through a real Alertmanager to the project's webhook receiver.

Prometheus runs on loopback with the project's scrape configuration and alert rules: the target
rewritten to the test's collector, the intervals shortened, and the rules' ``for:`` cut to a few
seconds so that the outage fires within the test (except the hour the backup-disk trend must hold:
a short run would extrapolate seconds of the machine's own disk). Alertmanager runs with the
project's route, receiver and inhibitions, the webhook pointed at the receiver the test starts and
the grouping waits shortened. Every dashboard panel expression is evaluated through Prometheus's
HTTP API and must return data for the collector's instance. Then another process takes SQLite's
write lock (a maintenance job's long transaction): the database alert must reach the receiver and
its consequences must not; when the lock goes, the alert is resolved.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ci import require_program
from tests.evidence import read_ledger, reconcile, spool_keys, sqlite_keys
from tests.telemetry_support import free_port

ROOT = Path(__file__).resolve().parent.parent
RATE_INTERVAL = "15s"
RULE_FOR = "4s"
"""The rules' ``for:`` in this test: long enough to prove an alert waits, short enough to fire."""
LONG_FOR = ("1h",)
"""Durations kept as they are: a trend over hours, which a test run cannot show."""

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


def _get_json(url: str, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.load(response)


def _get_text(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(response.read().decode())


def _wait(
    what: str, check: Callable[[], bool], timeout_s: float, *processes: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(
                    f"{process.args[0]} exited with {process.returncode} while waiting for {what}"
                )
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError, KeyError):
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


def _start(args: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    # The child keeps its own copies of the descriptors; the parent's close at once.
    with open(log.with_suffix(".out"), "wb") as stdout, open(log, "wb") as stderr:
        return subprocess.Popen(args, stdout=stdout, stderr=stderr, **kwargs)


class Prom:
    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process

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


@dataclass
class Receiver:
    url: str
    jsonl: Path
    process: subprocess.Popen[bytes]

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification received so far, in order."""
        if not self.jsonl.exists():
            return []
        lines = self.jsonl.read_text().splitlines()
        return [alert for line in lines for alert in json.loads(line)["alerts"]]

    def statuses(self, name: str) -> list[str]:
        return [a["status"] for a in self.alerts() if a["labels"]["alertname"] == name]


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
    process = _start(
        [sys.executable, "-m", "collector", "run", "--config", str(tmp_path / "collector.yaml")],
        tmp_path / "collector.log",
        cwd=tmp_path,
        env=env,
    )
    try:
        yield process, tmp_path, port
    finally:
        _stop(process)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    port = free_port()
    jsonl = tmp_path / "notifications.jsonl"
    script = ROOT / "prometheus" / "alert_receiver.py"
    process = _start(
        [sys.executable, str(script), "--port", str(port), "--jsonl", str(jsonl)], tmp_path / "receiver.log"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait("the alert receiver", lambda: "notifications" in _get_json(url), 15, process)
        yield Receiver(url, jsonl, process)
    finally:
        _stop(process)


@pytest.fixture
def alertmanager(receiver: Receiver, tmp_path: Path) -> Iterator[str]:
    binary = require_program("prometheus-alertmanager", package="prometheus-alertmanager")
    config = yaml.safe_load((ROOT / "prometheus" / "alertmanager.yml").read_text())
    for route in [config["route"], *config["route"].get("routes", [])]:
        route.update({"group_wait": "1s", "group_interval": "2s"})
    for hooks in (r.get("webhook_configs", []) for r in config["receivers"]):
        for hook in hooks:
            hook["url"] = f"{receiver.url}/alerts"
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = _start(
        [
            binary,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # a single instance: no gossip port
        ],
        tmp_path / "alertmanager.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(
            "alertmanager ready", lambda: urllib.request.urlopen(f"{url}/-/ready").status == 200, 30, process
        )
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)


@pytest.fixture
def prometheus(
    collector: tuple[subprocess.Popen[bytes], Path, int], alertmanager: str, tmp_path: Path
) -> Iterator[Prom]:
    binary = require_program("prometheus", package="prometheus")
    _, _, collector_port = collector
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    # Runbook links point at this collector, so the test can open them.
    config["global"]["external_labels"]["runbook_base_url"] = f"http://127.0.0.1:{collector_port}/runbook"
    rules = yaml.safe_load((ROOT / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule and rule["for"] not in LONG_FOR:
                rule["for"] = RULE_FOR
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "collector"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{collector_port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = _start(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
        ],
        tmp_path / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait("prometheus ready", lambda: urllib.request.urlopen(f"{url}/-/ready").status == 200, 30, process)
        yield Prom(url, process)
    finally:
        _stop(process)


def _dashboard_queries() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"]))
        for annotation in dashboard["annotations"]["list"]:
            if "expr" in annotation:
                found.append((f"{path.name}: annotation {annotation['name']}", annotation["expr"]))
    return found


def _alert_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load((ROOT / "prometheus" / "alerts.yml").read_text())
    return [(r["alert"], r["expr"]) for group in rules["groups"] for r in group["rules"]]


def _as_grafana_would(expr: str, instance: str) -> str:
    """The expression with the dashboard's variables as Grafana interpolates them for one selected
    job and instance (a regex variable: regex-escaped, backslashes doubled in the PromQL string)."""
    instance_regex = re.escape(instance).replace("\\", "\\\\")
    return (
        expr.replace("$instance", instance_regex)
        .replace("$job", "collector")
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__interval", RATE_INTERVAL)
    )


def test_dashboards_alerts_and_their_delivery_work_against_the_real_servers(
    collector: tuple[subprocess.Popen[bytes], Path, int], prometheus: Prom, receiver: Receiver
) -> None:
    process, workdir, port = collector
    instance = f"127.0.0.1:{port}"
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
        prometheus.process,
    )

    # Every panel returns data for the selected instance, each series labelled with it.
    without_data = []
    for name, expr in _dashboard_queries():
        concrete = _as_grafana_would(expr, instance)
        answer = prometheus.query(concrete)
        assert answer["status"] == "success", f"{name}: {answer.get('error')}\n{concrete}"
        if "annotation" in name:
            continue  # no alert fired and no restart happened: nothing to annotate yet
        series = answer["data"]["result"]
        if not series or any(s["metric"].get("instance") != instance for s in series):
            without_data.append(f"{name}: {concrete} -> {series}")
    assert not without_data, "panels without data for the instance:\n" + "\n".join(without_data)

    for name, expr in _alert_expressions():
        answer = prometheus.query(expr)
        assert answer["status"] == "success", f"{name}: {answer.get('error')}"
    groups = _get_json(f"{prometheus.url}/api/v1/rules")["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {name for name, _ in _alert_expressions()}
    assert all(r["health"] == "ok" for r in loaded.values()), loaded
    time.sleep(2 * float(RULE_FOR.rstrip("s")))
    active = prometheus.alerts()
    # The trend of this machine's own disk may be pending (it must hold for an hour to fire).
    assert active.pop("CollectorBackupDiskFillingUp", "pending") == "pending"
    assert active == {}, "a healthy collector raises no alert"
    assert receiver.alerts() == []
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
        _wait(
            "CollectorDatabaseDown delivered to the receiver",
            lambda: "firing" in receiver.statuses("CollectorDatabaseDown"),
            60,
            process,
            prometheus.process,
            receiver.process,
        )
        (delivered,) = [a for a in receiver.alerts() if a["labels"]["alertname"] == "CollectorDatabaseDown"]
        assert delivered["labels"]["instance"] == instance
        assert delivered["labels"]["severity"] == "critical"
        # The runbook link resolves: the collector serves the section it points at.
        runbook = delivered["annotations"]["runbook_url"]
        page, anchor = runbook.split("#")
        assert f'id="{anchor}"' in _get_text(page)
        # One cause, one alert: its consequences stay quiet.
        active = prometheus.alerts()
        for quiet in (
            "CollectorDown",
            "CollectorBufferHigh",
            "CollectorBufferOverflow",
            "CollectorValuesLost",
            "CollectorBackupWriteFailing",
            "CollectorWriteLatencyHigh",
            "CollectorWriteSuccessRateLow",
            "CollectorBackupFilesWaiting",
            "CollectorWritesStalled",
            "CollectorIntakeStalled",
        ):
            assert quiet not in active, active
        status = _get_json(f"http://{instance}/api/v1/status")
        assert status["circuit"]["state"] == "open"
        assert "CollectorDatabaseDown" in [a["name"] for a in status["alerts"]]
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    # The database is back: the alert is resolved, and the files written meanwhile wait for replay.
    _wait(
        "CollectorDatabaseDown resolved at the receiver",
        lambda: "resolved" in receiver.statuses("CollectorDatabaseDown"),
        60,
        process,
        prometheus.process,
    )
    _wait(
        "CollectorBackupFilesWaiting delivered",
        lambda: "firing" in receiver.statuses("CollectorBackupFilesWaiting"),
        60,
        process,
        prometheus.process,
    )
    assert {a["labels"]["alertname"] for a in receiver.alerts()} == {
        "CollectorDatabaseDown",
        "CollectorBackupFilesWaiting",
    }
    assert "CollectorDatabaseDown" in (workdir / "receiver.out").read_text()

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
