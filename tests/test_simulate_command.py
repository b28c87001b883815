"""`collector simulate --mqtt`: every poll the simulator generates is one acknowledged message in
the payload contract, and the ledger says what was published."""

from __future__ import annotations

import csv
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector import cli
from collector.logs import DRIVER_LOGGERS
from collector.sources.payload import parse_payload
from tests.mqtt_support import HOST, PORT, unique
from tests.waiting import wait_until

pytestmark = pytest.mark.usefixtures("mqtt_broker", "collector_logging_restored")


@pytest.fixture
def collector_logging_restored() -> Iterator[None]:
    """The command configures the ``collector`` loggers for itself; give the other tests theirs back."""
    loggers = [logging.getLogger(name) for name in ("collector", *DRIVER_LOGGERS)]
    saved = [(list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


def test_the_simulator_publishes_each_poll_as_one_valid_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"sim-{unique('p')}"
    received: list[tuple[str, bytes]] = []
    lock = threading.Lock()
    subscriber = paho.Client(CallbackAPIVersion.VERSION2, client_id=unique("sub"), protocol=paho.MQTTv5)

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        with lock:
            received.append((message.topic, bytes(message.payload)))

    subscriber.on_message = on_message
    subscriber.connect(HOST, PORT)
    subscriber.subscribe(f"{prefix}/#", qos=1)
    subscriber.loop_start()
    handler = signal.getsignal(signal.SIGTERM)
    try:
        code = cli.main(
            [
                "simulate", "--no-env-file", "--mqtt", f"{HOST}:{PORT}", "--topic-prefix", prefix,
                "--tags", "25", "--groups", "3", "--interval", "0.2", "--cycles", "2", "--bad-ratio", "0.2",
                "--ledger", str(tmp_path / "ledger.csv"), "--client-id", unique("plant"),
            ]
        )  # fmt: skip
        wait_until(lambda: len(received) == 6, what="six messages")
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
    assert code == 0
    assert "published 6 polls (50 values), acknowledged 6, unacknowledged 0" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) == handler  # the command gives its signal handlers back
    assert sorted({topic for topic, _ in received}) == [f"{prefix}/group0{g}" for g in (1, 2, 3)]
    published = set()
    for _topic, payload in received:
        parsed = parse_payload(payload)
        assert parsed.problems == []
        published |= {(v.tag_name, v.timestamp, v.quality) for v in parsed.values}
    with open(tmp_path / "ledger.csv", encoding="utf-8", newline="") as handle:
        ledger = {(r["tag_name"], r["timestamp"], r["quality"]) for r in csv.DictReader(handle)}
    assert {(t, s.isoformat(timespec="microseconds"), q) for t, s, q in published} == ledger
    assert any(q == "BAD" for _t, _s, q in published)


def test_a_bad_broker_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", "--no-env-file", "--mqtt", "broker:port"]) == 2
    assert "--mqtt 'broker:port': expected HOST or HOST:PORT" in capsys.readouterr().err
