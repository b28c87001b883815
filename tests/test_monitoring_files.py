"""The monitoring files agree with each other and with what the collector exports.

Alert rules parse and pass their promtool unit tests; every alert has a firing and a quiet case and
a runbook section; every metric the rules and dashboards use is exported and documented.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from collector.config import load_config
from collector.service import CollectorService
from collector.telemetry import Telemetry
from collector.telemetry.tracing import Tracing
from tests.ci import require_program

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "prometheus" / "alerts.test.yml"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
METRIC = re.compile(r"\b(collector_[a-z0-9_]+|process_[a-z0-9_]+)")
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")
RUNBOOK_URL = '{{{{ or $externalLabels.runbook_base_url "http://127.0.0.1:9108/runbook" }}}}#{anchor}'
"""Every alert links to its runbook section under one base URL (an external label, with the
runbook the collector serves as the default)."""


def _promtool() -> str:
    return require_program("promtool", package="prometheus")


def _rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.prometheus
def test_rules_and_scrape_config_pass_promtool() -> None:
    promtool = _promtool()
    for args in (
        ["check", "rules", str(RULES)],
        ["check", "config", str(ROOT / "prometheus" / "prometheus.yml")],
        ["test", "rules", str(RULE_TESTS)],
    ):
        result = subprocess.run([promtool, *args], check=False, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


@pytest.mark.prometheus
def test_the_alertmanager_configuration_passes_amtool() -> None:
    amtool = require_program("amtool", package="prometheus-alertmanager")
    config = ROOT / "prometheus" / "alertmanager.yml"
    result = subprocess.run(
        [amtool, "check-config", str(config)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every alert, whatever its labels, reaches a receiver that has somewhere to send it.
    routes = yaml.safe_load(config.read_text())
    receivers = {r["name"]: r for r in routes["receivers"]}
    assert routes["route"]["receiver"] in receivers
    for receiver in receivers.values():
        assert receiver.get("webhook_configs") or receiver.get("email_configs"), receiver["name"]


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    for rule in _rules():
        name = rule["alert"]
        firing = quiet = False
        for group in tests:
            cases = [c for c in group.get("alert_rule_test", []) if c["alertname"] == name]
            instances = {
                m for s in group["input_series"] for m in re.findall(r'instance="([^"]+)"', s["series"])
            }
            for case in cases:
                expected = case.get("exp_alerts") or []
                firing |= bool(expected)
                alerted = {a["exp_labels"].get("instance") for a in expected}
                quiet |= not expected or bool(instances - alerted)
        assert firing and quiet, f"{name}: firing case {firing}, quiet case {quiet}"


def test_every_alert_is_documented_and_links_to_its_runbook_section() -> None:
    anchors = _anchors((ROOT / "docs" / "runbook.md").read_text())
    for rule in _rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == RUNBOOK_URL.format(anchor=name.lower()), name
        assert name.lower() in anchors, f"docs/runbook.md has no section for {name}"


def test_the_status_api_alerts_are_the_prometheus_alerts() -> None:
    source = (ROOT / "collector" / "api" / "status.py").read_text()
    api_alerts = set(re.findall(r'Alert\(\s*"(\w+)"', source))
    assert api_alerts and api_alerts <= {r["alert"] for r in _rules()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every metric family name the collector exports (samples too, for histograms)."""
    tmp = tmp_path_factory.mktemp("exported")
    config = load_config(
        None,
        environ={
            "COLLECTOR_SINK__TYPE": "sqlite",
            "COLLECTOR_SINK__PATH": str(tmp / "tags.db"),
            "COLLECTOR_BACKUP__DIR": str(tmp / "backup"),
            "COLLECTOR_API__PORT": "0",  # built, never started: its metrics exist all the same
        },
        env_file=None,
    )
    registry = CollectorRegistry()
    service = CollectorService(
        config, telemetry=Telemetry(registry=registry, tracing=Tracing(trace.NoOpTracer()))
    )
    try:
        names = set()
        for family in registry.collect():
            names.add(family.name + ("_total" if family.type == "counter" else ""))
            names.update(sample.name for sample in family.samples)
        return names
    finally:
        service.sink.close()


def test_every_metric_the_rules_and_dashboards_use_is_exported(exported: set[str]) -> None:
    texts = {str(RULES): RULES.read_text()} | {str(p): p.read_text() for p in DASHBOARDS}
    for where, text in texts.items():
        for name in set(METRIC.findall(text)):
            assert name in exported or HISTOGRAM_SUFFIX.sub("", name) in exported, f"{where} uses {name}"


def test_every_exported_collector_metric_is_documented(exported: set[str]) -> None:
    documented = set(re.findall(r"`(collector_[a-z0-9_]+)", (ROOT / "docs" / "metrics.md").read_text()))
    families = {HISTOGRAM_SUFFIX.sub("", n) for n in exported if n.startswith("collector_")}
    families = {n for n in families if not n.endswith("_created")}
    assert families - documented == set()
    assert documented - families == set()


def test_the_dashboard_serves_a_fleet() -> None:
    """A datasource, a job and an instance variable; every query per instance; every quantile
    computed per instance (never merged across collectors); rates with a unit."""
    provisioning = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yml").read_text()
    )
    prometheus_uid = next(d["uid"] for d in provisioning["datasources"] if d["type"] == "prometheus")
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        uids.add(dashboard["uid"])
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["datasource"]["current"]["value"] == prometheus_uid
        assert "$job" in variables["instance"]["query"]["query"]
        panels = [p for p in dashboard["panels"] if p["type"] != "row"]
        assert panels
        for panel in panels:
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            unit = panel["fieldConfig"]["defaults"].get("unit")
            for target in panel["targets"]:
                expr = target["expr"]
                assert target["datasource"]["uid"] == "${datasource}"
                assert 'job=~"$job", instance=~"$instance"' in expr, f"{panel['title']}: {expr}"
                assert "{{instance}}" in target["legendFormat"], panel["title"]
                for grouping in re.findall(r"histogram_quantile\([^,]+, sum by \(([^)]*)\)", expr):
                    assert {g.strip() for g in grouping.split(",")} == {"instance", "le"}, expr
                assert "quantile" not in expr or "sum by (instance, le)" in expr, expr
                if "rate(" in expr and panel["type"] == "timeseries":
                    assert unit not in (None, "short"), f"{panel['title']} has no rate unit"
        annotations = {a["name"]: a for a in dashboard["annotations"]["list"]}
        assert "ALERTS{" in annotations["Firing alerts"]["expr"]
        assert "process_start_time_seconds" in annotations["Restarts"]["expr"]
        titles = {link["title"] for link in dashboard["links"]}
        assert {"Runbook", "Traces"} <= titles
    assert "collector-admin" in uids
    assert len(uids) == len(DASHBOARDS), "dashboard uids must be unique"
