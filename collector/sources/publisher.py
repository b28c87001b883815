"""The simulator's publisher mode: polls from a DataQueue go to an MQTT broker as the JSON contract.

``collector simulate --mqtt HOST`` runs the built-in plant simulator and publishes every poll as
one message on ``<topic_prefix>/<group>`` with QoS 1, so a plant without a real polling engine (the
compose stack, a test, a benchmark) feeds collectors exactly as a polling engine on another machine
would. paho keeps QoS 1 messages that the broker has not acknowledged and sends them again after a
reconnect; :meth:`MqttPublisher.stop` waits for those acknowledgements and reports what is missing.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from collector.logs import RateLimiter, log_event
from collector.model import PollingData
from collector.sources.payload import encode_poll

log = logging.getLogger("collector.publisher")

MAX_INFLIGHT = 100
"""Messages published ahead of their acknowledgement."""


@dataclass(frozen=True, slots=True)
class PublishSettings:
    """Where and how the publisher sends (plain values, from the command line)."""

    host: str
    port: int = 1883
    protocol: str = "5"
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    topic_prefix: str = "plant"
    qos: int = 1
    keepalive_s: int = 30

    def topic(self, group: str) -> str:
        return f"{self.topic_prefix}/{group}" if self.topic_prefix else group


@dataclass(frozen=True, slots=True)
class PublishReport:
    polls: int
    values: int
    acknowledged: int
    """Messages the broker acknowledged (all of them with QoS 0, where nothing is acknowledged)."""

    @property
    def unacknowledged(self) -> int:
        return self.polls - self.acknowledged


_STOP = object()


class MqttPublisher:
    """Publishes each poll put on ``data_queue`` as one message; thread-safe start and stop."""

    def __init__(self, data_queue: queue.Queue[object], settings: PublishSettings) -> None:
        self._queue = data_queue
        self._settings = settings
        self._lock = threading.Lock()
        self._polls = 0
        self._values = 0
        self._acknowledged = 0
        self._connected = threading.Event()
        self._stopping = False
        self._log = RateLimiter(30.0)
        self._client = self._build_client()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def _build_client(self) -> paho.Client:
        s = self._settings
        v5 = s.protocol == "5"
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            reconnect_on_failure=True,
        )
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            client.tls_set_context(ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None))
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.max_queued_messages_set(0)  # no limit: while the broker is away, polls wait here
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        s = self._settings
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        self._client.loop_start()
        self._thread.start()
        log_event(
            log, logging.INFO, "publisher_started", broker=f"{s.host}:{s.port}", topics=s.topic("<group>")
        )

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def stop(self, timeout_s: float = 30.0) -> PublishReport:
        """Publish what is queued, wait up to ``timeout_s`` for the broker's acknowledgements,
        disconnect, and say how many polls were acknowledged."""
        self._queue.put(_STOP)
        self._thread.join()
        self._stopping = True
        deadline = time.monotonic() + timeout_s
        while self.report().unacknowledged and time.monotonic() < deadline:
            time.sleep(0.05)
        self._client.disconnect()
        self._client.loop_stop()
        report = self.report()
        log_event(
            log,
            logging.INFO if not report.unacknowledged else logging.ERROR,
            "publisher_stopped",
            polls=report.polls,
            values=report.values,
            acknowledged=report.acknowledged,
            unacknowledged=report.unacknowledged,
        )
        return report

    def report(self) -> PublishReport:
        with self._lock:
            return PublishReport(self._polls, self._values, self._acknowledged)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, PollingData):
                self._publish(item)

    def _publish(self, poll: PollingData) -> None:
        s = self._settings
        self._client.publish(s.topic(poll.group_name), encode_poll(poll), qos=s.qos)
        with self._lock:
            self._polls += 1
            self._values += len(poll)
            if s.qos == 0:
                self._acknowledged += 1

    def _on_publish(
        self, _client: paho.Client, _userdata: Any, _mid: int, _reason: ReasonCode, _props: Properties
    ) -> None:
        if self._settings.qos > 0:
            with self._lock:
                self._acknowledged += 1

    def _on_connect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            if self._log.ready():
                log_event(log, logging.ERROR, "publisher_refused", reason=str(reason))
            return
        self._connected.set()
        log_event(
            log, logging.INFO, "publisher_connected", broker=f"{self._settings.host}:{self._settings.port}"
        )

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self._connected.clear()
        if self._stopping:
            return
        log_event(
            log,
            logging.WARNING,
            "publisher_disconnected",
            "reconnecting; polls wait meanwhile",
            reason=str(reason),
        )
