"""docker-compose.yml's monitoring half holds together: Prometheus scrapes the collector's service
name and port with the project's rules, Grafana gets the provisioning and dashboards where its
provider looks, the datasources and the trace endpoint name services that exist."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from collector.api.openapi import openapi_document
from collector.config import load_config
from tests.test_compose import secret_files, service_env

ROOT = Path(__file__).resolve().parent.parent
JAEGER_OTLP_HTTP_PORT = 4318
JAEGER_UI_PORT = 16686
PROMETHEUS_PORT = 9090


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source, for every mount of a service."""
    out = {}
    for mount in service.get("volumes", []):
        source, target = str(mount).split(":")[:2]
        out[target] = source
    return out


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as compose gives it with the values of .env.example."""
    return service_env(service, read_env_example())


def read_env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _flag(command: list[str], name: str) -> str:
    (value,) = [part.split("=", 1)[1] for part in command if part.startswith(f"{name}=")]
    return value


def test_the_stack_has_every_part_and_publishes_on_loopback_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"oracle", "collector", "prometheus", "grafana", "jaeger"} <= set(services)
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for spec in service.get("ports", []):
            assert str(spec).startswith("127.0.0.1:"), f"{name} publishes {spec} beyond loopback"
        for target, source in _mounts(service).items():
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source} at {target}: missing"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_prometheus_scrapes_the_collector_service_with_the_projects_rules(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    mounts = _mounts(prometheus)
    config_path = Path(_flag(prometheus["command"], "--config.file"))
    source_dir = ROOT / mounts[str(config_path.parent)]
    config = yaml.safe_load((source_dir / config_path.name).read_text())
    for rule_file in config["rule_files"]:
        assert (source_dir / rule_file).is_file(), f"rule file {rule_file} is not in the mounted directory"
    assert "--enable-feature=exemplar-storage" in prometheus["command"]

    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "collector"]
    (target,) = [t for c in job["static_configs"] for t in c["targets"]]
    host, port = target.rsplit(":", 1)
    assert host in services, f"prometheus scrapes {host}, which is not a compose service"
    with tempfile.TemporaryDirectory() as directory:
        secrets = secret_files(compose, Path(directory))
        environ = service_env(services[host], read_env_example(), secrets)
        collector_config = load_config(None, environ=environ, env_file=None)
    assert collector_config.api.enabled
    assert collector_config.api.host == "0.0.0.0"  # reachable from the prometheus container
    assert collector_config.api.port == int(port)
    assert job.get("metrics_path", "/metrics") in openapi_document()["paths"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^EXPOSE {port}$", dockerfile, flags=re.MULTILINE)
    assert "/healthz" in dockerfile and "/healthz" in openapi_document()["paths"]


def test_grafana_finds_its_provisioning_dashboards_and_datasources(compose: dict[str, Any]) -> None:
    services = compose["services"]
    grafana = services["grafana"]
    mounts = _mounts(grafana)
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())["providers"]
    for provider in providers:
        dashboards_in_container = provider["options"]["path"]
        assert dashboards_in_container in mounts, f"nothing is mounted at {dashboards_in_container}"
        assert list((ROOT / mounts[dashboards_in_container]).glob("*.json"))
    home = Path(_environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (ROOT / mounts[str(home.parent)] / home.name).is_file()

    datasources = yaml.safe_load((provisioning / "datasources" / "datasources.yml").read_text())[
        "datasources"
    ]
    expected_ports = {"prometheus": PROMETHEUS_PORT, "jaeger": JAEGER_UI_PORT}
    for source in datasources:
        url = urlsplit(source["url"])
        assert url.hostname in services, f"datasource {source['name']} points at {url.hostname}"
        assert url.port == expected_ports[source["type"]]
    uids = {s["uid"] for s in datasources}
    for source in datasources:
        for link in source.get("jsonData", {}).get("exemplarTraceIdDestinations", []):
            assert link["datasourceUid"] in uids


def test_the_collector_sends_sampled_traces_to_a_bounded_jaeger(compose: dict[str, Any]) -> None:
    services = compose["services"]
    environment = _environment(services["collector"])
    endpoint = urlsplit(environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
    jaeger = services[endpoint.hostname]
    image, tag = jaeger["image"].split("@")[0].rsplit(":", 1)
    assert image == "jaegertracing/jaeger" and int(tag.split(".")[0]) >= 2, (
        "Jaeger v1 is past its end of life"
    )
    config_path = _flag_value(jaeger["command"], "--config")
    config = yaml.safe_load((ROOT / _mounts(jaeger)[config_path]).read_text())
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert endpoint.port == JAEGER_OTLP_HTTP_PORT == int(http.rsplit(":", 1)[1])
    assert int(config["extensions"]["jaeger_query"]["http"]["endpoint"].rsplit(":", 1)[1]) == JAEGER_UI_PORT
    (store,) = config["extensions"]["jaeger_storage"]["backends"].values()
    assert 0 < store["memory"]["max_traces"] <= 100_000, "traces in memory must be bounded"
    assert "otlp" in config["service"]["pipelines"]["traces"]["receivers"]
    assert environment["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert 0 < float(environment["OTEL_TRACES_SAMPLER_ARG"]) <= 1


def test_prometheus_sends_alerts_through_alertmanager_to_a_receiver(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    config_path = Path(_flag(prometheus["command"], "--config.file"))
    config = yaml.safe_load(
        (ROOT / _mounts(prometheus)[str(config_path.parent)] / config_path.name).read_text()
    )
    (target,) = [
        t for a in config["alerting"]["alertmanagers"] for c in a["static_configs"] for t in c["targets"]
    ]
    host, port = target.rsplit(":", 1)
    alertmanager = services[host]
    assert "alertmanager" in alertmanager["image"] and port == "9093"
    am_path = Path(_flag(alertmanager["command"], "--config.file"))
    am_config = yaml.safe_load((ROOT / _mounts(alertmanager)[str(am_path.parent)] / am_path.name).read_text())
    hooks = [h["url"] for r in am_config["receivers"] for h in r.get("webhook_configs", [])]
    assert hooks
    for hook in hooks:
        url = urlsplit(hook)
        receiver = services[url.hostname]
        script = next(t for t, src in _mounts(receiver).items() if src.endswith("alert_receiver.py"))
        assert script in receiver["command"] and str(url.port) in receiver["command"]
    assert "runbook_base_url" in config["global"]["external_labels"]


def _flag_value(command: list[str], name: str) -> str:
    """The value of ``name VALUE`` or ``name=VALUE`` in a command list."""
    for index, part in enumerate(command):
        if part == name:
            return command[index + 1]
        if part.startswith(f"{name}="):
            return part.split("=", 1)[1]
    raise AssertionError(f"{name} not in {command}")
