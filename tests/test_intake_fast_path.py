"""Intake remembers tag names it found valid; a known name still gets every value checked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from collector.buffer import TagBuffer
from collector.model import InvalidValue, PollingData, TagValue
from collector.sources import intake as intake_module
from collector.sources.intake import Intake

STAMP = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


class Refused:
    def __init__(self) -> None:
        self.items: list[InvalidValue] = []

    def __call__(self, items: Sequence[InvalidValue]) -> int:
        self.items.extend(items)
        return 0


def test_a_known_name_with_a_bad_value_is_still_refused() -> None:
    buffer, refused = TagBuffer(100), Refused()
    intake = Intake(buffer, refused)
    intake.submit(PollingData("g", STAMP, {"T1": 1.5, "T2": "RUNNING"}))
    long_ascii = "x" * 3_000  # past the fast path's length, within the 4 000-byte limit
    too_many_bytes = "\u00e9" * 2_500  # 2 500 characters, 5 000 bytes in UTF-8
    polls = [
        PollingData("g", STAMP, {"T1": [1, 2], "T2": too_many_bytes}),
        PollingData("g", STAMP, {"T1": long_ascii, "T2": None}, {"T3": "read timeout"}),
    ]
    for poll in polls:
        intake.submit(poll)
    assert [(i.tag_name, i.reason.split(" ")[0]) for i in refused.items] == [
        ("T1", "unsupported"),
        ("T2", "text"),
    ]
    taken = buffer.take(100)
    assert taken == [
        TagValue("T1", 1.5, STAMP),
        TagValue("T2", "RUNNING", STAMP),
        TagValue("T1", long_ascii, STAMP),
        TagValue("T2", None, STAMP),
        TagValue("T3", None, STAMP, "BAD"),
    ]
    assert all(type(v) is TagValue for v in taken)


def test_names_beyond_the_remembered_ones_are_still_checked(monkeypatch: object) -> None:
    monkeypatch.setattr(intake_module, "MAX_KNOWN_NAMES", 3)  # type: ignore[attr-defined]
    buffer, refused = TagBuffer(100), Refused()
    intake = Intake(buffer, refused)
    for round_ in range(3):
        intake.submit(PollingData("g", STAMP, {f"T{i}": i for i in range(5)} | {"": round_}))
    assert len(buffer) == 15 and [i.reason for i in refused.items] == ["tag name is empty"] * 3
