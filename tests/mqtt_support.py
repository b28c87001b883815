"""The Mosquitto broker the tests use (127.0.0.1:1883, anonymous), a publisher, and a private broker.

Tests that need the broker take the ``mqtt_broker`` fixture: they skip when it does not answer,
except under ``CI=true``, where a missing broker fails them. Several test runs share the broker, so
every test uses topics and client ids of its own (:func:`unique`), and sessions that expire soon.

:class:`PrivateBroker` runs the same ``mosquitto`` binary on a free port with its own persistence
directory, for tests that stop and restart a broker without disturbing anyone else's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.ci import missing, require_program

HOST = "127.0.0.1"
PORT = 1883
TEST_SESSION_EXPIRY_S = 120
"""Sessions the tests leave on the shared broker go away on their own after this long."""


def broker_answers(host: str = HOST, port: int = PORT, wait_s: float = 0.0) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
        time.sleep(0.2)


@pytest.fixture(scope="session")
def mqtt_broker() -> tuple[str, int]:
    if not broker_answers(wait_s=10.0):
        missing(f"no MQTT broker on {HOST}:{PORT} (mosquitto -d -c /etc/mosquitto/mosquitto.conf)")
    return HOST, PORT


def unique(prefix: str = "test") -> str:
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


def poll_payload(
    group: str, stamp: str, values: dict[str, object], errors: dict[str, str] | None = None
) -> bytes:
    return json.dumps(
        {
            "group": group,
            "timestamp": stamp,
            "values": [{"tag": tag, "value": value} for tag, value in values.items()],
            "errors": [{"tag": tag, "error": error} for tag, error in (errors or {}).items()],
        }
    ).encode()


class Publisher:
    """A QoS 1 publisher that waits for every PUBACK."""

    def __init__(self, host: str = HOST, port: int = PORT) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=unique("pub"), protocol=paho.MQTTv5)
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, topic: str, payloads: Iterable[bytes], qos: int = 1) -> None:
        infos = [self.client.publish(topic, payload, qos=qos) for payload in payloads]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def clear_session(client_id: str, host: str = HOST, port: int = PORT) -> None:
    """End a persistent session left on the broker (connect with clean start and no expiry)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    try:
        client.connect(host, port, clean_start=True)
        client.loop_start()
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


def stays_false(condition: Callable[[], object], seconds: float) -> bool:
    """True when ``condition`` never came true in ``seconds`` (that nothing more arrives, say)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return False
        time.sleep(0.05)
    return not condition()


class PrivateBroker:
    """A mosquitto of its own on a free port, with persistence in ``directory``; restartable."""

    def __init__(self, directory: Path, *, anonymous: bool = True, extra: Iterable[str] = ()) -> None:
        self.binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto"
            if Path("/usr/sbin/mosquitto").exists()
            else require_program("mosquitto", "mosquitto")
        )
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            self.port = probe.getsockname()[1]
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"listener {self.port} {HOST}",
                    *extra,  # options of this listener (TLS, a password file)
                    f"allow_anonymous {'true' if anonymous else 'false'}",
                    "persistence true",
                    f"persistence_location {directory}/",
                    "autosave_interval 1",
                    "max_queued_messages 100000",
                    # Run as whoever starts it (root in CI), so the directory need not change owner.
                    "user root" if os.geteuid() == 0 else "",
                    f"log_dest file {directory}/mosquitto.log",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)])
        assert broker_answers(HOST, self.port, wait_s=10.0), "private broker did not start"

    def stop(self) -> None:
        """Stop it the way a service manager would (SIGTERM: it saves its sessions)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> PrivateBroker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
