"""The backup files' bytes: the fast encoding writes exactly what the csv module writes."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from collector.model import TagValue, format_timestamp
from collector.spool_format import BACKUP_HEADER, backup_payload, backup_rows, encode_rows, format_value

ATTEMPT = datetime(2026, 3, 1, 8, 0, 5, 123456, tzinfo=UTC)


def csv_module(rows: list[list[str]] | list[tuple[str, ...]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


@given(st.lists(st.lists(st.text(), min_size=1, max_size=7), max_size=20))
def test_any_rows_are_encoded_as_the_csv_module_encodes_them(rows: list[list[str]]) -> None:
    assert encode_rows(rows) == csv_module(rows)


@given(st.lists(st.lists(st.text(alphabet=',"\r\n x\u2028', max_size=4), min_size=1, max_size=5), max_size=8))
def test_rows_full_of_separators_quotes_and_line_breaks_too(rows: list[list[str]]) -> None:
    assert encode_rows(rows) == csv_module(rows)


def test_the_common_batch_and_the_one_that_needs_quoting() -> None:
    plain = [("G01.T0001", "12.5", "2026-03-01T08:00:00.000000+00:00", "GOOD", "x")] * 3
    assert encode_rows(plain) == csv_module(plain)
    quoted = [*plain, ('tank "A", level', "1", "t", "GOOD", "x"), ("", "", "", "", "")]
    assert encode_rows(quoted) == csv_module(quoted)
    assert encode_rows([BACKUP_HEADER]) == (",".join(BACKUP_HEADER) + "\n").encode()
    assert encode_rows([("",)]) == b'""\n'


values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10))
stamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@given(st.lists(st.tuples(st.text(min_size=1, max_size=8), values, stamps), max_size=30))
def test_backup_rows_spell_every_value_as_before(readings: list[tuple[str, object, datetime]]) -> None:
    batch = [TagValue(name, value, stamp, "GOOD") for name, value, stamp in readings]  # type: ignore[arg-type]
    expected = [
        (
            v.tag_name,
            format_value(v.value),
            format_timestamp(v.timestamp),
            v.quality,
            format_timestamp(ATTEMPT),
        )
        for v in batch
    ]
    assert backup_rows(batch, ATTEMPT) == expected


def test_one_instant_in_two_time_zones_is_one_utc_timestamp() -> None:
    utc = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    local = utc.astimezone(timezone(timedelta(hours=9)))
    rows = backup_rows([TagValue("A", 1.0, utc), TagValue("B", 2.0, local)], ATTEMPT)
    assert rows[0][2] == rows[1][2] == "2026-03-01T08:00:00.000000+00:00"


@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=8), values, stamps, st.sampled_from(["GOOD", "BAD"])),
        max_size=30,
    )
)
def test_a_batch_encoded_in_one_go_is_byte_for_byte_the_csv_modules(
    readings: list[tuple[str, object, datetime, str]],
) -> None:
    batch = [TagValue(*reading) for reading in readings]  # type: ignore[arg-type]
    encoded = backup_payload(batch, ATTEMPT)
    assert len(encoded) == len(batch)
    assert encoded.payload == (csv_module(backup_rows(batch, ATTEMPT)) if batch else b"")


def test_a_plant_batch_in_one_go_needs_no_quoting_and_reads_back() -> None:
    stamp = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
    batch = [
        TagValue("G01.T0001", 12.5, stamp),
        TagValue("G01.T0002", True, stamp),
        TagValue("x,y", None, stamp, "BAD"),
    ]
    payload = backup_payload(batch, ATTEMPT).payload
    assert list(csv.reader(io.StringIO(payload.decode()))) == [
        ["G01.T0001", "12.5", "2026-03-01T08:00:00.000000+00:00", "GOOD", "2026-03-01T08:00:05.123456+00:00"],
        ["G01.T0002", "1", "2026-03-01T08:00:00.000000+00:00", "GOOD", "2026-03-01T08:00:05.123456+00:00"],
        ["x,y", "", "2026-03-01T08:00:00.000000+00:00", "BAD", "2026-03-01T08:00:05.123456+00:00"],
    ]
