import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from collector.model import (
    MAX_TAG_NAME_LENGTH,
    MAX_TEXT_LENGTH,
    PollingData,
    format_timestamp,
    parse_timestamp,
    readings,
    split_value,
    timestamp_error,
    to_utc,
    validation_error,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (None, None)),
        (1.5, (1.5, None)),
        (-0.0, (-0.0, None)),
        (42, (42, None)),
        (True, (1, None)),
        (False, (0, None)),
        ("RUNNING", (None, "RUNNING")),
        ("", (None, "")),
        (float("nan"), (None, "nan")),
        (float("inf"), (None, "inf")),
        (float("-inf"), (None, "-inf")),
        (1e126, (None, "1e+126")),
        (-1e130, (None, "-1e+130")),
        (9.99e125, (9.99e125, None)),
        (10**38 - 1, (10**38 - 1, None)),
        (10**38, (None, str(10**38))),
        (-(10**40), (None, str(-(10**40)))),
    ],
)
def test_split_value_puts_each_value_in_the_column_that_holds_it_exactly(value, expected):
    number, text = split_value(value)
    if isinstance(expected[0], float) and math.isnan(expected[0]):
        pytest.fail("no NaN should reach the number column")
    assert (number, text) == expected
    assert type(number) is type(expected[0])


def test_split_value_respects_a_narrower_integer_type():
    assert split_value(2**63, max_integer=2**63 - 1) == (None, str(2**63))
    assert split_value(2**63 - 1, max_integer=2**63 - 1) == (2**63 - 1, None)


def test_split_value_refuses_unsupported_types():
    with pytest.raises(TypeError):
        split_value(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value", "quality", "fragment"),
    [
        ("", 1, "GOOD", "empty"),
        ("   ", 1, "GOOD", "empty"),
        ("x" * (MAX_TAG_NAME_LENGTH + 1), 1, "GOOD", "101 characters"),
        (17, 1, "GOOD", "must be a string"),
        ("T1", 1, "UNCERTAIN", "GOOD or BAD"),
        ("T1", [1, 2], "GOOD", "unsupported value type list"),
        ("T1", b"raw", "GOOD", "unsupported value type bytes"),
        ("T1", "x" * (MAX_TEXT_LENGTH + 1), "GOOD", "4001 bytes"),
        # Bytes, not characters: 2 500 characters of "é" are 5 000 bytes, which Oracle refuses.
        ("T1", "é" * 2500, "GOOD", "5000 bytes in UTF-8, the limit is 4000 bytes"),
        ("T1", "€" * 1334, "GOOD", "4002 bytes"),
    ],
)
def test_validation_names_the_problem(name, value, quality, fragment):
    reason = validation_error(name, value, quality)
    assert reason is not None and fragment in reason


@pytest.mark.parametrize(
    "value", [None, 0, 1.25, True, "ALARM", float("nan"), 10**50, "é" * 2000, "€" * 1333, "x" * 4000]
)
def test_validation_accepts_every_storable_value(value):
    assert validation_error("x" * MAX_TAG_NAME_LENGTH, value, "GOOD") is None
    assert validation_error("T1", value, "BAD") is None


def test_timestamp_must_be_a_datetime():
    assert timestamp_error(datetime.now(UTC)) is None
    assert "str" in (timestamp_error("2026-01-01") or "")
    assert "NoneType" in (timestamp_error(None) or "")


def test_to_utc_keeps_microseconds_and_reads_naive_as_utc_by_default():
    naive = datetime(2026, 3, 1, 12, 0, 0, 123456)
    assert to_utc(naive) == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    plus9 = datetime(2026, 3, 1, 21, 0, 0, 999999, tzinfo=timezone(timedelta(hours=9)))
    converted = to_utc(plus9)
    assert converted.tzinfo is UTC
    assert (converted.hour, converted.microsecond) == (12, 999999)


def test_timestamp_text_round_trips_with_microseconds():
    stamp = datetime(2026, 11, 28, 21, 37, 59, 1, tzinfo=UTC)
    text = format_timestamp(stamp)
    assert text == "2026-11-28T21:37:59.000001+00:00"
    assert parse_timestamp(text) == stamp
    assert parse_timestamp("2026-11-28T21:37:59.000001Z") == stamp


def test_a_poll_yields_values_as_good_and_read_errors_as_bad():
    poll = PollingData("g", datetime.now(UTC), {"A": 1, "B": "x"}, {"C": "timeout"})
    assert list(readings(poll)) == [("A", 1, "GOOD"), ("B", "x", "GOOD"), ("C", None, "BAD")]
    assert len(poll) == 3
