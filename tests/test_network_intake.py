"""The step MQTT and HTTP share: a payload's values through intake's accept call, the rest refused,
everything counted, and the log kept quiet under a flood. No broker, no server, no sleeps."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from collector.buffer import TagBuffer
from collector.model import InvalidValue
from collector.sources.counters import SourceCounters
from collector.sources.intake import Intake
from collector.sources.network import PayloadIntake, RejectionLog

STAMP = "2026-11-30T10:00:00Z"
WHEN = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
NOW = WHEN.timestamp() + 2.5


class Rig:
    def __init__(self, *, partial: bool) -> None:
        self.buffer = TagBuffer(1000)
        self.refused: list[InvalidValue] = []
        self.lags: list[tuple[str, float]] = []
        self.counters = SourceCounters(
            "mqtt",
            endpoint="test",
            lag_observer=lambda kind, s: self.lags.append((kind, s)),
            wall_clock=lambda: NOW,
        )
        self.intake = Intake(self.buffer, self._refuse)
        self.payloads = PayloadIntake(self.intake, self.counters, partial=partial)

    def _refuse(self, items: list[InvalidValue]) -> int:
        self.refused.extend(items)
        return 0


def payload(*polls: dict[str, object]) -> bytes:
    return json.dumps({"polls": list(polls)}).encode()


GOOD = {"group": "g", "timestamp": STAMP, "values": [{"tag": "A", "value": 1}, {"tag": "B", "value": 2}]}
BAD = {"group": "g", "timestamp": "yesterday", "values": [{"tag": "C", "value": 3}]}


def test_partial_accepts_the_good_and_rejects_the_rest_with_where_it_came_from() -> None:
    rig = Rig(partial=True)
    taken = rig.payloads.take(payload(GOOD, BAD), where="mqtt topic plant/line1", redelivered=True)
    assert taken.accepted == 2
    assert sorted(v.tag_name for v in rig.buffer.take(10)) == ["A", "B"]
    (row,) = rig.refused
    assert row.tag_name == "C" and row.reason.startswith("mqtt topic plant/line1: /polls/1/timestamp: ")
    stats = rig.counters.stats()
    counts = (stats.messages, stats.polls, stats.values, stats.refused, stats.malformed, stats.redeliveries)
    assert counts == (1, 1, 2, 1, 1, 1)
    assert rig.lags == [("mqtt", 2.5)]  # one observation per accepted poll
    # The accounting identity sees every reading: accepted or refused.
    assert rig.intake.stats().accepted == 2 and rig.intake.stats().invalid == 1


def test_all_or_nothing_accepts_nothing_of_a_payload_with_a_problem() -> None:
    rig = Rig(partial=False)
    taken = rig.payloads.take(payload(GOOD, BAD), where="http")
    assert taken.accepted == 0 and len(taken.problems) == 1
    assert len(rig.buffer) == 0 and rig.refused == []  # the client was told; nothing to keep
    stats = rig.counters.stats()
    assert (stats.values, stats.refused, stats.malformed, stats.polls) == (0, 3, 1, 0)
    assert rig.lags == []
    assert rig.payloads.take(payload(GOOD), where="http").accepted == 2


def test_an_unreadable_message_is_one_rejected_row_with_its_start() -> None:
    rig = Rig(partial=True)
    rig.payloads.refuse(
        b"x" * 5000, "payload of 5000 bytes exceeds source.max_payload_bytes (4096)", where="mqtt topic t"
    )
    (row,) = rig.refused
    assert row.value == "x" * 200 + "..."
    assert row.reason == "mqtt topic t: /: payload of 5000 bytes exceeds source.max_payload_bytes (4096)"
    assert rig.counters.stats().refused == 1


def test_a_flood_of_bad_messages_is_logged_once_per_interval_with_the_count_between(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = RejectionLog("mqtt", to_csv=True, interval_s=10.0, clock=lambda: now[0])
    rig = Rig(partial=True)
    rig.payloads = PayloadIntake(rig.intake, rig.counters, partial=True, rejection_log=log)
    with caplog.at_level(logging.WARNING, logger="collector.intake"):
        for second in range(25):
            now[0] = float(second)
            rig.payloads.take(b"garbage", where="mqtt topic t")
    lines = [r for r in caplog.records if getattr(r, "collector_event", "") == "payload_rejected"]
    assert len(lines) == 3  # at 0, 10 and 20 s
    assert [r.collector_fields["not_logged_since_last"] for r in lines] == [0, 9, 9]  # type: ignore[attr-defined]
    assert rig.counters.stats().malformed == 25  # every one counted
