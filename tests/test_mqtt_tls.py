"""The MQTT source over TLS with a username and a password file, against a real Mosquitto that
requires both; and what a wrong password looks like to an operator."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.buffer import TagBuffer
from collector.config import MqttSourceConfig, load_config
from collector.sources.counters import SourceCounters, SourceState
from collector.sources.intake import Intake
from collector.sources.mqtt import MqttSource
from collector.sources.network import PayloadIntake
from collector.sources.setup import mqtt_settings
from tests.ci import require_program
from tests.mqtt_support import HOST, PrivateBroker, poll_payload, unique
from tests.waiting import wait_until

USER, PASSWORD = "collector", "s3cret with spaces"


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    openssl = require_program("openssl", "openssl")
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=test plant CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    extensions = directory / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(extensions),
    )
    key.chmod(0o644)  # the broker may run as another user
    return ca, cert, key


@pytest.fixture
def secure_broker(tmp_path: Path) -> tuple[PrivateBroker, Path]:
    ca, cert, key = _certificates(tmp_path)
    passwords = tmp_path / "passwords"
    subprocess.run(
        [require_program("mosquitto_passwd", "mosquitto"), "-b", "-c", str(passwords), USER, PASSWORD],
        check=True,
        capture_output=True,
    )
    passwords.chmod(0o644)
    broker = PrivateBroker(
        tmp_path / "broker",
        anonymous=False,
        extra=[f"cafile {ca}", f"certfile {cert}", f"keyfile {key}", f"password_file {passwords}"],
    )
    return broker, ca


def _source(tmp_path: Path, port: int, ca: Path, password: str) -> tuple[MqttSource, TagBuffer, str]:
    secret = tmp_path / f"mqtt-{unique('pw')}"
    secret.write_text(password + "\n", encoding="utf-8")
    topic = f"secure/{unique('t')}"
    config = load_config(
        None,
        environ={
            "COLLECTOR_SOURCE__TYPE": "mqtt",
            "COLLECTOR_SOURCE__PORT": str(port),
            "COLLECTOR_SOURCE__TLS__ENABLED": "true",
            "COLLECTOR_SOURCE__TLS__CA_FILE": str(ca),
            "COLLECTOR_SOURCE__USERNAME": USER,
            "COLLECTOR_SOURCE__PASSWORD_FILE": str(secret),
            "COLLECTOR_SOURCE__CLIENT_ID": unique("tls"),
            "COLLECTOR_SOURCE__TOPICS": f"['{topic}/#']",
            "COLLECTOR_SOURCE__RECONNECT_MAX_S": "1",
        },
        env_file=None,
    )
    assert isinstance(config.source, MqttSourceConfig)
    settings = mqtt_settings(config.source)
    assert settings.endpoint == f"mqtts://{HOST}:{port}"
    buffer = TagBuffer(1000)
    counters = SourceCounters("mqtt", endpoint=settings.endpoint)
    return (
        MqttSource(settings, PayloadIntake(Intake(buffer, lambda _items: 0), counters, partial=True)),
        buffer,
        topic,
    )


def test_values_arrive_over_tls_with_a_password_file(
    tmp_path: Path, secure_broker: tuple[PrivateBroker, Path]
) -> None:
    broker, ca = secure_broker
    with broker:
        source, buffer, topic = _source(tmp_path, broker.port, ca, PASSWORD)
        source.start()
        try:
            wait_until(lambda: source.counters.stats().up, what="a TLS connection")
            publisher = paho.Client(
                CallbackAPIVersion.VERSION2, client_id=unique("pub"), protocol=paho.MQTTv5
            )
            publisher.tls_set_context(ssl.create_default_context(cafile=str(ca)))
            publisher.username_pw_set(USER, PASSWORD)
            publisher.connect(HOST, broker.port)
            publisher.loop_start()
            publisher.publish(
                f"{topic}/line1", poll_payload("g", "2026-11-30T10:00:00Z", {"A": 1, "B": 2}), qos=1
            ).wait_for_publish(10)
            publisher.disconnect()
            publisher.loop_stop()
            wait_until(lambda: len(buffer) == 2, what="the values")
        finally:
            source.stop()


def test_a_wrong_password_is_reported_and_retried(
    tmp_path: Path, secure_broker: tuple[PrivateBroker, Path]
) -> None:
    broker, ca = secure_broker
    with broker:
        source, _buffer, _topic = _source(tmp_path, broker.port, ca, "wrong")
        source.start()
        try:
            wait_until(
                lambda: (source.counters.stats().last_error or "").startswith("broker refused"),
                what="the refusal",
            )
            stats = source.counters.stats()
            assert stats.state is SourceState.DISCONNECTED and stats.connects == 0
            assert (
                "authorized" in (stats.last_error or "").lower()
                or "password" in (stats.last_error or "").lower()
            )
        finally:
            source.stop()
