"""The MQTT source against the real Mosquitto broker: delivery, acknowledgement after the accept
call, shared subscriptions, malformed messages, a broker that goes away."""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.buffer import TagBuffer
from collector.config import load_config
from collector.model import InvalidValue, TagValue
from collector.service import CollectorService
from collector.sources.counters import SourceCounters, SourceState
from collector.sources.intake import Intake
from collector.sources.mqtt import MqttSettings, MqttSource
from collector.sources.network import PayloadIntake
from tests.mqtt_support import (
    HOST,
    TEST_SESSION_EXPIRY_S,
    PrivateBroker,
    Publisher,
    clear_session,
    poll_payload,
    stays_false,
    unique,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.usefixtures("mqtt_broker")

BASE = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def stamp(second: float) -> str:
    return (BASE + timedelta(seconds=second)).isoformat().replace("+00:00", "Z")


def polls(count: int, tags: int = 10, start: int = 0) -> list[bytes]:
    return [
        poll_payload(f"g{i % 3}", stamp(start + i), {f"T{j:03d}": i * 1000 + j for j in range(tags)})
        for i in range(count)
    ]


# --------------------------------------------------------------------------- a source on its own


class Rig:
    """An MqttSource over a real buffer, with the refused readings kept in a list."""

    def __init__(
        self, topic: str, client_id: str, *, buffer: TagBuffer | None = None, **settings: Any
    ) -> None:
        self.buffer = buffer if buffer is not None else TagBuffer(100_000)
        self.invalid: list[InvalidValue] = []
        self.counters = SourceCounters("mqtt", endpoint="test")
        intake = Intake(self.buffer, self._refused)
        config = {"session_expiry_s": TEST_SESSION_EXPIRY_S, "reconnect_max_s": 2, **settings}
        self.settings = MqttSettings(client_id=client_id, topics=(f"{topic}/#",), **config)
        self.source = MqttSource(self.settings, PayloadIntake(intake, self.counters, partial=True))

    def _refused(self, items: Iterable[InvalidValue]) -> int:
        self.invalid.extend(items)
        return 0  # none lost

    def start(self) -> Rig:
        self.source.start()
        # Connected once the broker has granted the subscriptions.
        wait_until(
            lambda: self.counters.stats().state is SourceState.CONNECTED, what="a subscribed connection"
        )
        return self

    def values(self) -> list[TagValue]:
        return self.buffer.take(1_000_000)


@pytest.fixture
def topic() -> str:
    return f"test/{unique('mqtt')}"


@pytest.fixture
def sessions() -> Iterator[list[str]]:
    """Client ids whose persistent sessions are ended after the test."""
    ids: list[str] = []
    yield ids
    for client_id in ids:
        clear_session(client_id)


def test_values_arrive_and_a_graceful_stop_leaves_nothing_to_redeliver(
    topic: str, sessions: list[str]
) -> None:
    client_id = unique("src")
    sessions.append(client_id)
    rig = Rig(topic, client_id).start()
    try:
        with Publisher() as pub:
            pub.publish(f"{topic}/line1", polls(20))
        wait_until(lambda: rig.counters.stats().values == 200)
    finally:
        rig.source.stop()
    got = rig.values()
    assert sorted((v.tag_name, v.value) for v in got) == sorted(
        (f"T{j:03d}", i * 1000 + j) for i in range(20) for j in range(10)
    )
    assert all(v.timestamp.tzinfo is UTC for v in got)
    stats = rig.counters.stats()
    assert (stats.messages, stats.polls, stats.redeliveries, stats.state) == (20, 20, 0, SourceState.CLOSED)

    # Everything was acknowledged: the same session, started again, gets nothing back.
    again = Rig(topic, client_id).start()
    try:
        with Publisher() as pub:
            pub.publish(f"{topic}/line1", polls(1, start=100))
        wait_until(lambda: again.counters.stats().messages == 1)
        assert stays_false(lambda: again.counters.stats().messages > 1, 1.0)
    finally:
        again.source.stop()
    assert again.counters.stats().redeliveries == 0


class BlockingBuffer(TagBuffer):
    """A buffer whose accept call waits for a signal: a collector caught mid-accept."""

    def __init__(self) -> None:
        super().__init__(100_000)
        self.entered = threading.Event()
        self.release = threading.Event()

    def put_many(self, batch: Iterable[TagValue]) -> int:
        self.entered.set()
        self.release.wait(10)
        return super().put_many(batch)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_message_is_acknowledged_only_after_its_accept_call_returned(
    topic: str, sessions: list[str], protocol: str
) -> None:
    client_id = unique("src")
    sessions.append(client_id)
    blocked = BlockingBuffer()
    first = Rig(topic, client_id, buffer=blocked, protocol=protocol).start()
    with Publisher() as pub:
        pub.publish(f"{topic}/line1", polls(1))
    assert blocked.entered.wait(10), "the message never reached the accept call"
    # The process dies here: the connection drops with the accept call still running.
    client = first.source._client
    client.loop_stop()
    sock = client.socket()
    assert sock is not None
    sock.close()
    blocked.release.set()
    wait_until(lambda: len(blocked) == 10, what="the accept call to return")
    first.source.stop(timeout_s=1.0)  # ends its thread; the connection is already gone

    second = Rig(topic, client_id, protocol=protocol).start()
    try:
        wait_until(lambda: second.counters.stats().values == 10)
    finally:
        second.source.stop()
    stats = second.counters.stats()
    assert stats.redeliveries == 1  # the broker says so (DUP): the values will count as duplicates
    assert sorted(v.tag_name for v in second.values()) == [f"T{j:03d}" for j in range(10)]


def test_malformed_messages_are_rejected_with_topic_and_reason_and_acknowledged(
    topic: str, sessions: list[str]
) -> None:
    client_id = unique("src")
    sessions.append(client_id)
    rig = Rig(topic, client_id, max_payload_bytes=2048).start()
    try:
        with Publisher() as pub:
            pub.publish(f"{topic}/bad", [b"not json", b"[1]"])
            pub.publish(f"{topic}/big", [b"{" + b" " * 4096 + b"}"])
            pub.publish(
                f"{topic}/mixed",
                [
                    json.dumps(
                        {
                            "group": "g",
                            "timestamp": stamp(0),
                            "values": [
                                {"tag": "OK", "value": 1},
                                {"tag": "Q", "value": 2, "quality": "MAYBE"},
                            ],
                        }
                    ).encode()
                ],
            )
            pub.publish(f"{topic}/late", polls(1, tags=3))
        wait_until(lambda: rig.counters.stats().messages == 5)
    finally:
        rig.source.stop()
    assert sorted(v.tag_name for v in rig.values()) == ["OK", "T000", "T001", "T002"]
    reasons = [item.reason for item in rig.invalid]
    assert reasons[0].startswith(f"mqtt topic {topic}/bad: /: not valid JSON")
    assert reasons[1].startswith(f"mqtt topic {topic}/bad: /: must be a JSON object")
    assert (
        reasons[2]
        == f"mqtt topic {topic}/big: /: payload of 4098 bytes exceeds source.max_payload_bytes (2048)"
    )
    assert (
        reasons[3]
        == f"mqtt topic {topic}/mixed: /values/1 (tag 'Q'): quality must be GOOD or BAD, got 'MAYBE'"
    )
    assert rig.invalid[0].value == "not json"  # what came, for the operator
    stats = rig.counters.stats()
    assert (stats.malformed, stats.refused, stats.values) == (4, 4, 4)

    # All acknowledged: nothing comes back.
    again = Rig(topic, client_id).start()
    try:
        assert stays_false(lambda: again.counters.stats().messages > 0, 1.0), (
            again.counters.stats(),
            again.invalid,
            again.buffer.take(100),
        )
    finally:
        again.source.stop()


def test_a_shared_group_hands_each_message_to_one_member(topic: str, sessions: list[str]) -> None:
    group = unique("grp")
    members = []
    for _ in range(2):
        client_id = unique("member")
        sessions.append(client_id)
        members.append(Rig(topic, client_id, shared_group=group).start())
    try:
        for member in members:
            assert member.settings.subscriptions == (f"$share/{group}/{topic}/#",)
        with Publisher() as pub:
            pub.publish(f"{topic}/line1", polls(40, tags=5))
        wait_until(lambda: sum(m.counters.stats().values for m in members) == 200)
    finally:
        for member in members:
            member.source.stop()
    taken = [m.values() for m in members]
    assert all(len(part) >= 5 for part in taken), "one member got everything"
    keys = [(v.tag_name, v.timestamp) for part in taken for v in part]
    assert len(keys) == len(set(keys)) == 200


# --------------------------------------------------------------------------- the whole service


def _service_config(tmp: Path, topic: str, client_id: str, port: int = 1883, **extra: str) -> Any:
    return load_config(
        None,
        environ={
            "COLLECTOR_SOURCE__TYPE": "mqtt",
            "COLLECTOR_SOURCE__PORT": str(port),
            "COLLECTOR_SOURCE__TOPICS": f"['{topic}/#']",
            "COLLECTOR_SOURCE__CLIENT_ID": client_id,
            "COLLECTOR_SOURCE__SESSION_EXPIRY_S": str(TEST_SESSION_EXPIRY_S),
            "COLLECTOR_SOURCE__RECONNECT_MAX_S": "2",
            "COLLECTOR_SINK__TYPE": "sqlite",
            "COLLECTOR_SINK__PATH": str(tmp / "tags.db"),
            "COLLECTOR_BACKUP__DIR": str(tmp / "backup"),
            "COLLECTOR_WRITER__FLUSH_INTERVAL_S": "0.1",
            "COLLECTOR_API__PORT": "0",
            **extra,
        },
        env_file=None,
    )


def _rows(path: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return {(str(name), str(ts)) for name, ts in conn.execute("SELECT tag_name, timestamp FROM TAG_DATA")}


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_the_service_stores_what_arrives_and_shows_its_source(
    tmp_path: Path, topic: str, sessions: list[str]
) -> None:
    client_id = unique("svc")
    sessions.append(client_id)
    service = CollectorService(_service_config(tmp_path, topic, client_id))
    service.start()
    try:
        assert service.mqtt is not None
        wait_until(lambda: service.mqtt is not None and service.mqtt.counters.stats().up)
        with Publisher() as pub:
            pub.publish(f"{topic}/probe", [b"probe"])
            pub.publish(f"{topic}/line1", polls(5, tags=20))
        wait_until(lambda: service.snapshot().writer.written == 100)
        assert service.api is not None
        status = _get_json(f"{service.api.url}/api/v1/status")
        with urllib.request.urlopen(f"{service.api.url}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    finally:
        report = service.stop()
    source = status["source"]
    assert source["type"] == "mqtt"
    (mqtt,) = [entry for entry in source["inputs"] if entry["kind"] == "mqtt"]
    assert mqtt["state"] == "connected" and mqtt["values"] == 100 and mqtt["malformed"] >= 1
    assert mqtt["subscriptions"] == [f"{topic}/#"]
    assert 'collector_source_connected{source="mqtt"} 1.0' in metrics
    assert 'collector_source_values_total{source="mqtt"} 100.0' in metrics
    assert 'collector_source_lag_seconds_count{source="mqtt"} 5.0' in metrics
    assert report.snapshot.balanced()
    assert len(_rows(tmp_path / "tags.db")) == 100
    rejected = next((tmp_path / "backup").glob("rejected_*.csv"))
    with rejected.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and all(row["reason"].startswith(f"mqtt topic {topic}/probe: ") for row in rows)


@pytest.mark.slow
def test_a_broker_restart_mid_run_loses_nothing_published_with_qos1(
    tmp_path: Path, private_broker: PrivateBroker, topic: str
) -> None:
    client_id = unique("svc")
    service = CollectorService(_service_config(tmp_path, topic, client_id, port=private_broker.port))
    service.start()
    assert service.mqtt is not None
    counters = service.mqtt.counters
    published: list[bytes] = []
    try:
        wait_until(lambda: counters.stats().up)
        pub = Publisher(HOST, private_broker.port)
        try:
            first = polls(50, tags=20)
            pub.publish(f"{topic}/line1", first)
            published += first
        finally:
            pub.close()
        # The broker goes away (as its service manager would stop it) while values wait for us.
        private_broker.stop()
        wait_until(lambda: not counters.stats().up)
        private_broker.start()
        pub = Publisher(HOST, private_broker.port)
        try:
            second = polls(50, tags=20, start=50)
            pub.publish(f"{topic}/line1", second)
            published += second
        finally:
            pub.close()
        wait_until(lambda: counters.stats().up, what="the reconnection")
        wait_until(
            lambda: service.snapshot().writer.written + service.snapshot().writer.duplicate >= 2000, 20
        )
    finally:
        report = service.stop()
        clear_session(client_id, HOST, private_broker.port)
    stats = counters.stats()
    assert stats.connects >= 2 and stats.disconnects >= 1
    expected = {
        (tag["tag"], datetime.fromisoformat(json.loads(p)["timestamp"]))
        for p in published
        for tag in json.loads(p)["values"]
    }
    stored = {
        (name, datetime.fromisoformat(ts).replace(tzinfo=UTC)) for name, ts in _rows(tmp_path / "tags.db")
    }
    assert stored == expected
    assert report.snapshot.balanced()


@pytest.mark.slow
def test_a_broker_that_is_down_at_start_is_waited_for(tmp_path: Path, topic: str) -> None:
    broker = PrivateBroker(tmp_path / "late-broker")  # not started yet: the plant boots in any order
    client_id = unique("svc")
    service = CollectorService(_service_config(tmp_path, topic, client_id, port=broker.port))
    service.start()
    assert service.mqtt is not None
    counters = service.mqtt.counters
    try:
        wait_until(lambda: counters.stats().last_error == "broker unreachable", what="the first attempt")
        assert not counters.stats().up and service.liveness() == []  # down is not dead
        with broker:
            wait_until(lambda: counters.stats().up, what="the connection once the broker is up")
            pub = Publisher(HOST, broker.port)
            try:
                pub.publish(f"{topic}/line1", polls(3, tags=5))
            finally:
                pub.close()
            wait_until(lambda: service.snapshot().writer.written == 15, what="the values")
    finally:
        service.stop()
