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
    NOT_ONLY_SPACE,
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


def r(tag: str, value: object = None, **extra: object) -> dict[str, Any]:
    return {"tag": tag, "value": value, **extra}


def test_one_poll_gives_good_values_bad_errors_and_explicit_qualities() -> None:
    parsed = parse(
        poll(
            values=[
                r("T1", 71.5),
                r("T2", "RUNNING"),
                r("T3", True),
                r("T4", 3, quality="BAD"),
                {"tag": "T5"},
            ],
            errors=[{"tag": "T6", "error": "read timeout"}],
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


def test_a_tag_twice_in_a_poll_is_not_an_error_the_key_makes_it_one_row() -> None:
    parsed = parse(poll(values=[r("A", 1), r("A", 2)], errors=[{"tag": "A", "error": "x"}]))
    assert parsed.problems == []
    assert {(v.tag_name, v.timestamp) for v in parsed.values} == {("A", WHEN)}


def test_a_batch_keeps_each_polls_own_time_and_offsets_become_utc() -> None:
    parsed = parse(
        {
            "polls": [
                poll(values=[r("A", 1)]),
                {"group": "line2", "timestamp": "2026-11-30T11:00:01.5+01:00", "values": [r("B", 2)]},
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
        (
            b'{"group": "g", "timestamp": "' + STAMP.encode() + b'", "values": [{"tag": "A", "value": NaN}]}',
            "",
            "NaN",
        ),
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
        ("0001-01-01T00:00:00+01:00", "outside the years 1 to 9999"),
        ("9999-12-31T23:59:59-01:00", "outside the years 1 to 9999"),
        (1764496800, "must be an RFC 3339 string, got a number"),
    ],
)
def test_a_bad_timestamp_refuses_every_reading_of_its_poll(stamp: object, reason: str) -> None:
    bad = {**poll(values=[r("A", 1)], errors=[{"tag": "B", "error": "x"}]), "timestamp": stamp}
    parsed = parse({"polls": [poll(values=[r("OK", 1)]), bad]})
    assert [v.tag_name for v in parsed.values] == ["OK"]
    (problem,) = parsed.problems
    assert problem.pointer == "/polls/1/timestamp" and reason in problem.reason
    # Each refused reading is kept for the rejected CSV, with what was sent.
    assert [(x.tag_name, x.value, x.timestamp, x.quality) for x in problem.readings] == [
        ("A", 1, stamp, "GOOD"),
        ("B", None, stamp, "BAD"),
    ]
    assert parsed.refused == 2


@pytest.mark.parametrize(
    ("values", "errors", "pointer", "reason"),
    [
        ([r("A", [1, 2])], [], "/values/1 (tag 'A')", "got an array"),
        ([r("A", 1, quality="UNCERTAIN")], [], "/values/1 (tag 'A')", "quality must be GOOD or BAD"),
        ([r("A", 1, unit="C")], [], "/values/1 (tag 'A')", "unknown key 'unit'"),
        ([{"value": 1}], [], "/values/1", "missing tag"),
        ([7], [], "/values/1", "a reading must be an object"),
        ([r("A", "x" * 4001)], [], "/values/1 (tag 'A')", "limit is 4000"),
        ([r("x" * 101, 1)], [], "/values/1 (tag '" + "x" * 101 + "')", "limit is 100"),
        ([r(" ", 1)], [], "/values/1 (tag ' ')", "tag name is empty"),
        ([r(5, 1)], [], "/values/1", "tag name must be a string"),  # type: ignore[arg-type]
        ([], [{"tag": "A", "error": 5}], "/errors/0 (tag 'A')", "error must be a string"),
        ([], [{"tag": "A"}], "/errors/0 (tag 'A')", "error must be a string"),
        ([], [{"tag": "A", "error": "x", "value": 1}], "/errors/0 (tag 'A')", "unknown key 'value'"),
    ],
)
def test_a_bad_reading_refuses_that_reading_only(
    values: list[Any], errors: list[Any], pointer: str, reason: str
) -> None:
    parsed = parse(poll(values=[r("GOOD1", 1.5), *values], errors=errors))
    assert [(v.tag_name, v.value) for v in parsed.values] == [("GOOD1", 1.5)]
    (problem,) = parsed.problems
    assert problem.pointer == pointer
    assert reason in problem.reason
    assert len(problem.readings) == 1


def test_poll_structure_faults_name_the_key() -> None:
    cases = {
        "/values": poll(values={"A": 1}),
        "/errors": poll(errors="boom"),
        "/unit": poll(unit="C"),
        "/timestamp": {"group": "g", "values": [r("A", 1)]},
        "/group": {**poll(values=[r("A", 1)]), "group": "g" * 101},
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
    tagged = parse(poll(values=[r("A", [1])]))
    (row,) = as_invalid(tagged.problems[0], where="mqtt topic t", excerpt="")
    assert row.tag_name == "A" and row.reason.startswith("mqtt topic t: /values/0 (tag 'A'): ")
    assert excerpt(b"x" * 1000).endswith("...") and len(excerpt(b"x" * 1000)) == 203


def test_the_schemas_white_space_is_pythons() -> None:
    # A name of white space only is refused by the model (str.strip) and by the schema's pattern:
    # the two must agree on every character, or a fuzzer finds a name one accepts and one refuses.
    pattern = re.compile(NOT_ONLY_SPACE)
    for code in range(0x110000):
        char = chr(code)
        assert bool(pattern.search(char)) is not char.isspace(), hex(code)


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
    poll(
        values=[r("A", 1), r("B", "x"), {"tag": "C"}, r("D", None, quality="BAD")],
        errors=[{"tag": "E", "error": ""}],
    ),
    poll(),
    {"polls": [poll(values=[r("A", 1.5)]), poll(errors=[{"tag": "B", "error": "t"}])]},
    [poll()],
    {"polls": []},
    poll(values=[r("A", [1])]),
    poll(values=[r("A", 1, quality="OK")]),
    poll(values=[{"value": 1}]),
    poll(values=[r("x" * 101, 1)]),
    poll(values=[r("A", "y" * 4001)]),
    poll(values=[r(" ", 1)]),
    poll(values={"A": 1}),
    {**poll(), "timestamp": "2026-11-30T10:00:00"},
    {**poll(), "timestamp": "9999-12-31T00:00:00Z"},
    {**poll(), "timestamp": "9999-12-30T00:00:00Z"},
    {**poll(), "group": ""},
    {**poll(), "extra": 1},
    {"group": "g"},
    poll(errors=[{"tag": "A", "error": 1}]),
    poll(errors=[{"tag": "A"}]),
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
    assert schemas["TagValuesScalar"]["nullable"] is True
