"""The MQTT source: values arrive as JSON messages on a broker (docs/intake.md).

Delivery guarantee: QoS 1 on a persistent session (clean start off, a session expiry), and manual
acknowledgement. The network thread (paho's loop) only puts each message on an in-memory inbox;
the ``mqtt-intake`` thread parses it, makes the intake's accept call, and only then sends the
PUBACK. A collector killed at any moment therefore leaves every message it has not accepted
unacknowledged, and the broker delivers it again (to this collector when it comes back under the
same client id; its session keeps them). Values delivered twice come back as counted duplicates:
the table's key makes the insert idempotent.

The inbox needs no bound of its own: the broker sends at most ``receive_maximum`` (MQTT 5) or its
``max_inflight_messages`` unacknowledged messages ahead. The accept call never waits for the
database (the buffer drops or spills as always when full), so neither thread ever waits on it.

Several collectors can split one plant with an MQTT 5 shared subscription (``shared_group``): the
broker hands each message to one member of the group.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from collector.buffer import BufferClosedError
from collector.logs import RateLimiter, log_event
from collector.sources.counters import SourceCounters, SourceState
from collector.sources.network import PayloadIntake

log = logging.getLogger("collector.mqtt")

STOP_TIMEOUT_S = 10.0
CONNECT_LOG_INTERVAL_S = 30.0
SETTLE_TIMEOUT_S = 2.0
SETTLE_FILTER = "$collector/settle"
"""Never subscribed to: unsubscribing from it is a no-op whose answer marks a point in the stream."""


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """The MQTT source's settings as plain values (built from ``source:`` by the service)."""

    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "5"
    client_id: str = field(default_factory=lambda: f"collector-{socket.gethostname()}")
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    session_expiry_s: int = 86_400
    topics: tuple[str, ...] = ("plant/#",)
    shared_group: str | None = None
    qos: int = 1
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60
    receive_maximum: int = 100
    max_payload_bytes: int = 4 * 1024 * 1024

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The topic filters as subscribed: ``$share/<group>/<filter>`` with a shared group."""
        if self.shared_group is None:
            return self.topics
        return tuple(f"$share/{self.shared_group}/{topic}" for topic in self.topics)

    @property
    def endpoint(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


_STOP = object()


class MqttSource:
    """Subscribes to the broker and hands every message's values to intake, acknowledging after."""

    def __init__(self, settings: MqttSettings, intake: PayloadIntake) -> None:
        self._settings = settings
        self._intake = intake
        self._counters = intake.counters
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._disconnected = threading.Event()
        self._settled = threading.Event()
        self._connect_log = RateLimiter(CONNECT_LOG_INTERVAL_S)
        self._disconnect_log = RateLimiter(CONNECT_LOG_INTERVAL_S)
        self._session_open = False
        self._ever_connected = False
        self._client = self._build_client()
        self._thread = threading.Thread(target=self._run, name="mqtt-intake", daemon=True)
        self._started = False

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def settings(self) -> MqttSettings:
        return self._settings

    @property
    def counters(self) -> SourceCounters:
        return self._counters

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background (a broker that is down is retried with backoff)."""
        s = self._settings
        properties = None
        if s.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = s.session_expiry_s
            properties.ReceiveMaximum = s.receive_maximum
        self._thread.start()
        self._client.connect_async(
            s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=properties
        )
        self._client.loop_start()
        self._started = True
        log_event(
            log,
            logging.INFO,
            "mqtt_starting",
            broker=s.endpoint,
            client_id=s.client_id,
            protocol=s.protocol,
            subscriptions=",".join(s.subscriptions),
            qos=s.qos,
        )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop taking messages, accept and acknowledge those already received, disconnect.

        The session stays on the broker (it is not unsubscribed): what arrives meanwhile waits for
        this collector's return, or goes to the other members of its shared group.
        """
        if self._closing.is_set():
            return
        self._closing.set()
        self._inbox.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if not self._started:
            return
        self._settle_acknowledgements(timeout_s)
        if self._client.disconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._disconnected.wait(timeout_s)
        self._client.loop_stop()
        self._counters.set_state(SourceState.CLOSED)

    def _settle_acknowledgements(self, timeout_s: float) -> None:
        """Wait until the broker has processed the PUBACKs sent so far.

        A PUBACK written just before the DISCONNECT is sometimes not applied to the session
        (Mosquitto 2.0), and the message comes back as a redelivery. The broker handles one
        client's packets in order, so the answer to an UNSUBSCRIBE of a filter this client never
        subscribed to (harmless) means every PUBACK before it has been taken.
        """
        if not self._client.is_connected():
            return
        self._settled.clear()
        result, _mid = self._client.unsubscribe(SETTLE_FILTER)
        if result == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._settled.wait(min(timeout_s, SETTLE_TIMEOUT_S))

    def _on_unsubscribe(self, *_args: Any) -> None:
        self._settled.set()

    # ------------------------------------------------------------------ the paho client

    def _build_client(self) -> paho.Client:
        s = self._settings
        v5 = s.protocol == "5"
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            clean_session=None if v5 else False,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            manual_ack=True,
            reconnect_on_failure=True,
        )
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            client.tls_set_context(self._tls_context())
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_unsubscribe = self._on_unsubscribe
        return client

    def _tls_context(self) -> ssl.SSLContext:
        s = self._settings
        context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        if s.cert_file is not None:
            context.load_cert_chain(str(s.cert_file), str(s.key_file) if s.key_file else None)
        if s.tls_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        s = self._settings
        if reason.is_failure:
            self._counters.set_state(SourceState.DISCONNECTED, f"broker refused the connection: {reason}")
            if self._connect_log.ready():
                log_event(
                    log,
                    logging.ERROR,
                    "mqtt_connect_refused",
                    "the broker refused the connection; retrying with backoff",
                    broker=s.endpoint,
                    reason=str(reason),
                    key="source.username, source.password_file"
                    if reason.value in (0x86, 0x87, 4, 5)
                    else "source",
                )
            return
        if self._ever_connected and not flags.session_present:
            # Either the session expired (source.session_expiry_s) or the broker lost it: messages
            # published while this collector was away were not kept for it.
            log_event(
                log,
                logging.WARNING,
                "mqtt_session_lost",
                "the broker had no session for this client: what it held for it is gone",
                client_id=s.client_id,
            )
        self._ever_connected = True
        self._session_open = True
        log_event(
            log,
            logging.INFO,
            "mqtt_connected",
            broker=s.endpoint,
            client_id=s.client_id,
            session_present=flags.session_present,
        )
        if s.protocol == "5":
            client.subscribe([(topic, SubscribeOptions(qos=s.qos)) for topic in s.subscriptions])
        else:
            client.subscribe([(topic, s.qos) for topic in s.subscriptions])

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        self._counters.set_state(SourceState.DISCONNECTED, "broker unreachable")
        if self._connect_log.ready():
            log_event(
                log,
                logging.ERROR,
                "mqtt_unreachable",
                "cannot reach the broker; retrying with backoff",
                broker=self._settings.endpoint,
                retry_max_s=self._settings.reconnect_max_s,
            )

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._disconnected.set()
        was_open, self._session_open = self._session_open, False
        if self._closing.is_set() or not was_open:
            return  # a refused connection was reported as such by _on_connect
        self._counters.set_state(SourceState.DISCONNECTED, f"disconnected: {reason}")
        if not self._disconnect_log.ready():
            return
        log_event(
            log,
            logging.WARNING,
            "mqtt_disconnected",
            "connection to the broker lost; reconnecting with backoff",
            broker=self._settings.endpoint,
            reason=str(reason),
        )

    def _on_subscribe(
        self,
        _client: paho.Client,
        _userdata: Any,
        _mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        refused = [reason for reason in reasons if reason.is_failure]
        if not refused:
            # Connected means able to receive: the subscriptions are in place.
            self._counters.set_state(SourceState.CONNECTED)
        for topic, reason in zip(self._settings.subscriptions, reasons, strict=False):
            if reason.is_failure:
                self._counters.error(f"subscription {topic} refused: {reason}")
                log_event(
                    log,
                    logging.ERROR,
                    "mqtt_subscribe_refused",
                    "the broker refused a subscription",
                    topic=topic,
                    reason=str(reason),
                    key="source.topics",
                )

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        # The network thread only hands over: parsing and the accept call happen on mqtt-intake.
        if not self._closing.is_set():
            self._inbox.put(message)
        # Once closing, a message is neither accepted nor acknowledged: the broker keeps it.

    # ------------------------------------------------------------------ the intake thread

    def _run(self) -> None:
        while True:
            message = self._inbox.get()
            if message is _STOP:
                return
            try:
                self._handle(message)
            except BufferClosedError:
                log_event(
                    log,
                    logging.ERROR,
                    "intake_after_close",
                    "message arrived after shutdown began; left unacknowledged for redelivery",
                )
                return
            except Exception:
                # Not acknowledged: the broker delivers it again after a reconnect.
                log.exception("error taking an MQTT message (left unacknowledged)")

    def _handle(self, message: paho.MQTTMessage) -> None:
        try:
            where = f"mqtt topic {message.topic}"
        except UnicodeDecodeError:
            where = "mqtt topic (not UTF-8)"
        payload = bytes(message.payload)
        limit = self._settings.max_payload_bytes
        if len(payload) > limit:
            reason = f"payload of {len(payload)} bytes exceeds source.max_payload_bytes ({limit})"
            self._intake.refuse(payload, reason, where=where, redelivered=message.dup)
        else:
            self._intake.take(payload, where=where, redelivered=message.dup)
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)
