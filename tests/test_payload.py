"""The JSON payload contract: what is accepted, what is refused and why, and the shipped JSON Schema."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from collector.model import InvalidValue, TagValue
from collector.sources.payload import (
    SCHEMA_FILE,
    as_invalid,
    excerpt,
    json_schema,
    openapi_schemas,
    parse_payload,
    parse_rfc3339,
)

REPO = Path(__file__).resolve().parents[1]
STAMP = "2026-11-30T10:00:00.250Z"
WHEN = datetime(2026, 11, 30, 10, 0, 0, 250_000, tzinfo=UTC)


def poll(**fields: Any) -> dict[str, Any]:
    return {"group": "line1", "timestamp": STAMP, **fields}


def parse(document: object) -> Any:
    return parse_payload(json.dumps(document).encode())


def test_one_poll_gives_good_values_bad_errors_and_explicit_qualities() -> None:
    parsed = parse(
        poll(
            values={
                "T1": 71.5,
                "T2": "RUNNING",
                "T3": True,
                "T4": {"value": 3, "quality": "BAD"},
                "T5": None,
            },
            errors={"T6": "read timeout"},
        )
    )
    assert parsed.problems == []
    assert parsed.values == [
        TagValue("T1", 71.5, WHEN, "GOOD"),
        TagValue("T2", "RUNNING", WHEN, "GOOD"),
        TagValue("T3", True, WHEN, "GOOD"),
        TagValue("T4", 3, WHEN, "BAD"),
        TagValue("T5", None, WHEN, "GOOD"),
        TagValue("T6", None, WHEN, "BAD"),
    ]
    assert (parsed.polls, parsed.timestamps, parsed.refused) == (1, [WHEN], 0)


def test_a_batch_keeps_each_polls_own_time_and_offsets_become_utc() -> None:
    parsed = parse(
        {
            "polls": [
                poll(values={"A": 1}),
                {"group": "line2", "timestamp": "2026-11-30T11:00:01.5+01:00", "values": {"B": 2}},
            ]
        }
    )
    assert parsed.problems == []
    assert [(v.tag_name, v.timestamp) for v in parsed.values] == [
        ("A", WHEN),
        ("B", datetime(2026, 11, 30, 10, 0, 1, 500_000, tzinfo=UTC)),
    ]
    assert parsed.polls == 2


@pytest.mark.parametrize(
    ("raw", "pointer", "reason"),
    [
        (b"not json", "", "not valid JSON"),
        (b"\xff\xfe", "", "not valid JSON"),
        (b'{"group": "g", "timestamp": "' + STAMP.encode() + b'", "values": {"A": NaN}}', "", "NaN"),
        (b"[1, 2]", "", "must be a JSON object"),
        (b'{"polls": []}', "/polls", "non-empty array"),
        (b'{"polls": [], "extra": 1}', "/extra", "unknown key in a batch"),
        (b'{"polls": [7]}', "/polls/0", "a poll must be an object, got a number"),
        (b'{"timestamp": "' + STAMP.encode() + b'"}', "/group", "group must be a non-empty string"),
    ],
)
def test_unreadable_payloads_are_refused_whole_with_a_pointer_and_reason(
    raw: bytes, pointer: str, reason: str
) -> None:
    parsed = parse_payload(raw)
    assert parsed.values == []
    assert [p.pointer for p in parsed.problems] == [pointer]
    assert reason in parsed.problems[0].reason
    assert parsed.refused == 1


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        ("2026-11-30T10:00:00", "not RFC 3339 with an offset"),  # naive: ambiguous over a network
        ("2026-11-30 10:00:00Z", "not RFC 3339"),
        ("20261130T100000Z", "not RFC 3339"),
        ("2026-11-30T10:00:60Z", "not a real time"),  # a leap second
        ("2026-02-30T10:00:00Z", "not a real time"),
        (1764496800, "must be an RFC 3339 string, got a number"),
    ],
)
def test_a_bad_timestamp_refuses_every_reading_of_its_poll(stamp: object, reason: str) -> None:
    parsed = parse(
        {"polls": [poll(values={"OK": 1}), {**poll(values={"A": 1}, errors={"B": "x"}), "timestamp": stamp}]}
    )
    assert [v.tag_name for v in parsed.values] == ["OK"]
    (problem,) = parsed.problems
    assert problem.pointer == "/polls/1/timestamp" and reason in problem.reason
    # Each refused reading is kept for the rejected CSV, with what was sent.
    assert [(r.tag_name, r.value, r.timestamp, r.quality) for r in problem.readings] == [
        ("A", 1, stamp, "GOOD"),
        ("B", None, stamp, "BAD"),
    ]
    assert parsed.refused == 2


@pytest.mark.parametrize(
    ("values", "errors", "pointer", "reason"),
    [
        ({"A": [1, 2]}, {}, "/values/A", "got an array"),
        ({"A": {"value": 1}}, {}, "/values/A", "needs a quality"),
        ({"A": {"value": 1, "quality": "UNCERTAIN"}}, {}, "/values/A", "quality must be GOOD or BAD"),
        ({"A": {"value": 1, "quality": "GOOD", "unit": "C"}}, {}, "/values/A", "unknown key 'unit'"),
        ({"A": "x" * 4001}, {}, "/values/A", "limit is 4000"),
        ({"x" * 101: 1}, {}, "/values/" + "x" * 101, "limit is 100"),
        ({" ": 1}, {}, "/values/ ", "tag name is empty"),
        ({"a/b~c": [1]}, {}, "/values/a~1b~0c", "got an array"),
        ({}, {"A": 5}, "/errors/A", "read error must be a string"),
        ({"A": 1}, {"A": "timeout"}, "/values/A", "in both values and errors"),
    ],
)
def test_a_bad_reading_refuses_that_tag_only(
    values: dict[str, Any], errors: dict[str, Any], pointer: str, reason: str
) -> None:
    parsed = parse(poll(values={"GOOD1": 1.5, **values}, errors=errors))
    assert ("GOOD1", 1.5) in [(v.tag_name, v.value) for v in parsed.values]
    assert parsed.problems[0].pointer == pointer
    assert reason in parsed.problems[0].reason
    assert all(len(p.readings) == 1 for p in parsed.problems)


def test_poll_structure_faults_name_the_key() -> None:
    cases = {
        "/values": poll(values=[1]),
        "/errors": poll(errors="boom"),
        "/unit": poll(unit="C"),
        "/timestamp": {"group": "g", "values": {"A": 1}},
        "/group": {**poll(values={"A": 1}), "group": "g" * 101},
    }
    for pointer, document in cases.items():
        problems = parse(document).problems
        assert [p.pointer for p in problems] == [pointer], document


def test_rejected_rows_carry_where_the_message_came_from() -> None:
    parsed = parse_payload(b"\x00garbage")
    rows = as_invalid(parsed.problems[0], where="mqtt topic plant/line1", excerpt=excerpt(b"\x00garbage"))
    assert rows == [
        InvalidValue("", "\x00garbage", None, "", f"mqtt topic plant/line1: /: {parsed.problems[0].reason}")
    ]
    tagged = parse(poll(values={"A": [1]}))
    (row,) = as_invalid(tagged.problems[0], where="mqtt topic t", excerpt="")
    assert row.tag_name == "A" and row.reason.startswith("mqtt topic t: /values/A: ")
    assert excerpt(b"x" * 1000).endswith("...") and len(excerpt(b"x" * 1000)) == 203


def test_rfc3339_keeps_microseconds_and_cuts_what_is_finer() -> None:
    assert parse_rfc3339("2026-11-30t10:00:00.123456789z") == (
        datetime(2026, 11, 30, 10, 0, 0, 123_456, tzinfo=UTC),
        None,
    )


# --------------------------------------------------------------------------- the shipped schema


def test_the_shipped_schema_is_the_one_the_code_builds() -> None:
    shipped = json.loads((REPO / "schemas" / SCHEMA_FILE).read_text(encoding="utf-8"))
    assert shipped == json_schema()
    jsonschema.Draft202012Validator.check_schema(shipped)


_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _validator() -> jsonschema.Draft202012Validator:
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(lambda text: not isinstance(text, str) or bool(_DATE_TIME.match(text)))
    return jsonschema.Draft202012Validator(json_schema(), format_checker=checker)


DOCUMENTS: list[Any] = [
    poll(values={"A": 1, "B": "x", "C": None, "D": {"quality": "BAD"}}, errors={"E": "timeout"}),
    poll(),
    {"polls": [poll(values={"A": 1.5}), poll(errors={"B": ""})]},
    [poll()],
    {"polls": []},
    poll(values={"A": [1]}),
    poll(values={"A": {"value": 1, "quality": "OK"}}),
    poll(values={"A": {"value": 1}}),
    poll(values={"x" * 101: 1}),
    poll(values={"A": "y" * 4001}),
    poll(values={" ": 1}),
    {**poll(), "timestamp": "2026-11-30T10:00:00"},
    {**poll(), "group": ""},
    {**poll(), "extra": 1},
    {"group": "g"},
    poll(errors={"A": 1}),
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_schema_and_the_parser_agree(document: Any) -> None:
    schema_ok = _validator().is_valid(document)
    parser_ok = not parse(document).problems
    assert schema_ok == parser_ok


def test_the_openapi_form_has_no_type_lists_and_resolves_every_reference() -> None:
    schemas = openapi_schemas()
    text = json.dumps(schemas)
    assert '"type": [' not in text
    for ref in re.findall(r'"#/components/schemas/(\w+)"', text):
        assert ref in schemas
    assert schemas["ValuesScalar"]["nullable"] is True
