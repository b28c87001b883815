"""The compose stack's plant path: simulated plant -> Mosquitto -> collector -> database.

The files must agree: the publisher's topics match the collector's filter, both point at the broker
service and its port, the simulator's arguments are ones the real command accepts, and the broker's
configuration is one the real Mosquitto starts with.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector import cli
from collector.config import MqttSourceConfig, load_config, topic_filter_error
from tests.ci import require_program
from tests.mqtt_support import Publisher, broker_answers, unique
from tests.telemetry_support import free_port

REPO = Path(__file__).resolve().parents[1]
BROKER_CONF = REPO / "docker" / "mosquitto" / "mosquitto.conf"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition(" ")
            found.setdefault(key, []).append(value.strip())
    return found


def _matches(topic_filter: str, topic: str) -> bool:
    pattern = "^" + re.escape(topic_filter).replace(r"\+", "[^/]+").replace("/\\#", "(/.*)?") + "$"
    return re.match(pattern, topic) is not None


def test_the_broker_keeps_sessions_on_a_volume_and_listens_where_compose_publishes(
    compose: dict[str, Any],
) -> None:
    broker = compose["services"]["mosquitto"]
    assert broker["image"].startswith("eclipse-mosquitto:2")
    assert f"./{BROKER_CONF.relative_to(REPO)}:/mosquitto/config/mosquitto.conf:ro" in broker["volumes"]
    assert "mosquitto-data:/mosquitto/data" in broker["volumes"]
    assert broker["user"] != "0" and not str(broker["user"]).startswith("0:")
    conf = _directives(BROKER_CONF.read_text(encoding="utf-8"))
    assert conf["listener"] == ["1883"]
    assert conf["persistence"] == ["true"]
    assert conf["persistence_location"] == ["/mosquitto/data/"]
    # A collector away for a restart must find its messages kept: far beyond the default 1 000.
    assert int(conf["max_queued_messages"][0]) >= 100_000
    assert any(port.endswith(":1883") for port in broker["ports"])


def test_the_plant_publishes_what_the_collector_subscribes_to(compose: dict[str, Any]) -> None:
    services = compose["services"]
    plant, collector = services["plant"], services["collector"]
    args = cli._parser().parse_args(plant["command"])  # the real command line accepts them
    assert args.command == "simulate"
    assert args.mqtt == "mosquitto:1883" and args.qos == 1
    assert args.tags == 3491 and args.interval == 1.0  # the plant of the specification
    assert plant["depends_on"]["mosquitto"]["condition"] == "service_healthy"

    env = {k: str(v) for k, v in collector["environment"].items() if k.startswith("COLLECTOR_")}
    source = load_config(None, environ=env, env_file=None).source
    assert isinstance(source, MqttSourceConfig)
    assert (source.host, source.effective_port(), source.qos) == ("mosquitto", 1883, 1)
    assert source.shared_group and source.client_id
    assert collector["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    for group in range(1, args.groups + 1):
        topic = f"{args.topic_prefix}/group{group:02d}"
        assert any(_matches(f, topic) for f in source.topics), f"{topic} reaches no collector"
        assert all(topic_filter_error(f) is None for f in source.topics)


def test_the_real_mosquitto_starts_with_the_stacks_configuration(tmp_path: Path) -> None:
    binary = shutil.which("mosquitto") or require_program("/usr/sbin/mosquitto", "mosquitto")
    port = free_port()
    text = BROKER_CONF.read_text(encoding="utf-8")
    text = text.replace("listener 1883", f"listener {port} 127.0.0.1")
    text = text.replace("/mosquitto/data/", f"{tmp_path}/")
    (tmp_path / "mosquitto.conf").write_text(text + "\nuser root\n", encoding="utf-8")
    process = subprocess.Popen([binary, "-c", str(tmp_path / "mosquitto.conf")], stderr=subprocess.PIPE)
    try:
        assert broker_answers("127.0.0.1", port, wait_s=10.0), "mosquitto refused the configuration"
        with Publisher("127.0.0.1", port) as publisher:
            publisher.publish(f"plant/{unique('conf')}", [b"{}"])
    finally:
        process.terminate()
        process.wait(10)
