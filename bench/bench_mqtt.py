"""Values per second through MQTT against the direct in-process path, in the same run.

The same polls (``--tag-count`` tags each, the plant's group size by default) go through the whole
service twice into the same database: once put on the DataQueue in-process (the direct path), once
published to the Mosquitto broker on 127.0.0.1:1883 with QoS 1 and taken by the MQTT source, which
parses each message, makes the accept call and only then acknowledges it. The clock runs from the
first poll offered to the last value committed. The MQTT run also reports its intake alone: the
time until every value was accepted (the broker and the parser, without the database).

Run it from the repository root:

    python bench/bench_mqtt.py --sink sqlite
    python bench/bench_mqtt.py --sink postgresql
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import PostgresScratchTable, machine, sink_section
from collector.config import Config, load_config
from collector.model import PollingData
from collector.service import CollectorService
from collector.sources.payload import encode_poll

BROKER = ("127.0.0.1", 1883)
TIMEOUT_S = 300.0


def make_polls(values: int, tags: int) -> list[PollingData]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    count = max(1, values // tags)
    return [
        PollingData(
            f"group{p % 10 + 1:02d}",
            start + timedelta(milliseconds=p),
            {f"G{p % 10 + 1:02d}.T{t:04d}": float(t) + p * 0.001 for t in range(tags)},
        )
        for p in range(count)
    ]


def config(directory: Path, sink: dict[str, Any], source: dict[str, Any], capacity: int) -> Config:
    # A buffer that holds the whole run: the figure is what the database takes, never a spill.
    data = {
        "source": source,
        "sink": sink,
        "buffer": {"max_size": capacity, "spill_ratio": None},
        "backup": {"dir": str(directory / "backup")},
        "wal": {"dir": str(directory / "wal")},
        "api": {"enabled": False},
        "logging": {"level": "WARNING"},
    }
    path = directory / "collector.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    return load_config(path, environ={}, env_file=None)


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.001)


def _stored(service: CollectorService) -> int:
    stats = service.writer.stats()
    return stats.written + stats.duplicate


def direct(directory: Path, sink: dict[str, Any], data: list[PollingData]) -> float:
    total = sum(len(p) for p in data)
    data_queue: queue.Queue[object] = queue.Queue()
    service = CollectorService(
        config(directory, sink, {"type": "external"}, total + 1), data_queue=data_queue
    )
    service.start()
    try:
        started = time.perf_counter()
        for poll in data:
            data_queue.put(poll)
        _wait(lambda: _stored(service) >= total, "the direct run")
        elapsed = time.perf_counter() - started
    finally:
        service.stop()
    return total / elapsed


def through_mqtt(directory: Path, sink: dict[str, Any], data: list[PollingData]) -> tuple[float, float]:
    """(values/s committed, values/s accepted) through the broker."""
    total = sum(len(p) for p in data)
    topic = f"bench/{uuid.uuid4().hex[:10]}"
    client_id = f"bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    source = {
        "type": "mqtt",
        "host": BROKER[0],
        "port": BROKER[1],
        "topics": [f"{topic}/#"],
        "client_id": client_id,
        "session_expiry_s": 60,
    }
    service = CollectorService(config(directory, sink, source, total + 1))
    payloads = [encode_poll(p) for p in data]
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{client_id}-pub", protocol=paho.MQTTv5)
    publisher.max_inflight_messages_set(100)
    publisher.max_queued_messages_set(0)
    publisher.connect(*BROKER)
    publisher.loop_start()
    service.start()
    mqtt = service.mqtt
    assert mqtt is not None
    try:
        _wait(lambda: mqtt.counters.stats().up, "the subscription")
        started = time.perf_counter()
        for index, payload in enumerate(payloads):
            publisher.publish(f"{topic}/group{index % 10 + 1:02d}", payload, qos=1)
        _wait(lambda: mqtt.counters.stats().values >= total, "the MQTT intake")
        accepted = time.perf_counter() - started
        _wait(lambda: _stored(service) >= total, "the MQTT run")
        elapsed = time.perf_counter() - started
    finally:
        service.stop()
        publisher.disconnect()
        publisher.loop_stop()
        _end_session(client_id)
    return total / elapsed, total / accepted


def _end_session(client_id: str) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.connect(*BROKER, clean_start=True)
    client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sink", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--values", type=int, default=200_000)
    parser.add_argument("--tag-count", type=int, default=349, help="tags per poll (one MQTT message)")
    args = parser.parse_args()
    data = make_polls(args.values, args.tag_count)
    total = sum(len(p) for p in data)
    print(f"machine: {machine()}")
    print(f"values: {total} in {len(data)} polls of {args.tag_count}, into {args.sink}, write-ahead log on")
    table = PostgresScratchTable("bench_mqtt") if args.sink == "postgresql" else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sink = sink_section(args.sink, Path(tmp) / "direct", table.name if table else "TAG_DATA")
            (Path(tmp) / "direct").mkdir()
            base = direct(Path(tmp) / "direct", sink, data)
        print(f"direct (DataQueue):           {base:>10,.0f} values/s")
        if table is not None:
            table.truncate()
        with tempfile.TemporaryDirectory() as tmp:
            sink = sink_section(args.sink, Path(tmp) / "mqtt", table.name if table else "TAG_DATA")
            (Path(tmp) / "mqtt").mkdir()
            rate, intake = through_mqtt(Path(tmp) / "mqtt", sink, data)
        print(f"MQTT, QoS 1, ack after accept: {rate:>10,.0f} values/s   ratio {rate / base:.2f}")
        print(f"MQTT intake alone (accepted):  {intake:>10,.0f} values/s")
    finally:
        if table is not None:
            table.drop()


if __name__ == "__main__":
    main()
