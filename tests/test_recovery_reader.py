"""Reading backup files back: the value rule, line numbers, damaged records, resuming."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.recovery import reader as reader_module
from collector.recovery.reader import chunks
from collector.spool_format import (
    BACKUP_HEADER,
    REJECTED_HEADER,
    Damaged,
    NotABackupFile,
    Row,
    SpoolKind,
    format_value,
    parse_record,
    parse_value,
    read_header,
    records,
)
from tests.recovery_support import sample_values, write_backup

HEADER = ",".join(BACKUP_HEADER) + "\n"
STAMP = "2026-03-01T08:00:00.000007+00:00"


def _file(body: str | bytes, header: str = HEADER) -> io.BytesIO:
    data = header.encode() + (body.encode() if isinstance(body, str) else body)
    return io.BytesIO(data)


def _parsed(body: str | bytes) -> list[Row | Damaged]:
    handle = _file(body)
    kind, offset = read_header(handle)
    return [parse_record(record, kind) for record in records(handle, offset=offset)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("42", 42),
        ("-7", -7),
        ("0", 0),
        ("12.5", 12.5),
        ("1e+20", 1e20),
        ("-inf", -math.inf),
        ("123456789012345678901234567890123456789012", 123456789012345678901234567890123456789012),
        # Spelled otherwise than the collector spells a number: kept as the text it was.
        ("007", "007"),
        ("1.50", "1.50"),
        ("+5", "+5"),
        ("1_000", "1_000"),
        (" 5", " 5"),
        ("1E+20", "1E+20"),
        ("Infinity", "Infinity"),
        ("-nan", "-nan"),
        ("RUNNING", "RUNNING"),
    ],
)
def test_a_value_is_a_number_only_when_spelled_as_the_collector_spells_numbers(
    text: str, expected: object
) -> None:
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_nan_comes_back_as_nan() -> None:
    value = parse_value("nan")
    assert isinstance(value, float) and math.isnan(value)


@given(st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True)))
def test_every_number_the_collector_writes_reads_back_equal(number: float) -> None:
    back = parse_value(format_value(number))
    assert type(back) is type(number)
    assert back == number or (math.isnan(number) and math.isnan(back))


@given(st.text(max_size=50))
def test_text_reads_back_as_itself_unless_it_is_spelled_like_a_number(text: str) -> None:
    back = parse_value(format_value(text))
    if back is None:
        assert text == ""
    elif isinstance(back, str):
        assert back == text
    else:  # the documented ambiguity: the CSV cannot tell "42" the text from 42 the number
        assert format_value(back) == text


def test_booleans_come_back_as_one_and_zero_as_the_database_stores_them() -> None:
    assert parse_value(format_value(True)) == 1
    assert parse_value(format_value(False)) == 0


def test_rows_keep_their_values_names_and_line_numbers() -> None:
    body = (
        f"G01.T0001,12.5,{STAMP},GOOD,{STAMP}\n"
        f'"name, with ""quotes""\nand a newline",RUNNING,{STAMP},GOOD,{STAMP}\n'
        f"G01.T0003,,{STAMP},BAD,{STAMP}\n"
    )
    parsed = _parsed(body)
    assert [type(p) for p in parsed] == [Row, Row, Row]
    assert [p.line for p in parsed] == [2, 3, 5]  # the quoted name spans lines 3 and 4
    stamp = datetime(2026, 3, 1, 8, 0, 0, 7, tzinfo=UTC)
    assert [p.value for p in parsed if isinstance(p, Row)] == [
        ("G01.T0001", 12.5, stamp, "GOOD"),
        ('name, with "quotes"\nand a newline', "RUNNING", stamp, "GOOD"),
        ("G01.T0003", None, stamp, "BAD"),
    ]


def test_damaged_records_say_where_and_why() -> None:
    body = (
        f"G01.T0001,1,{STAMP},GOOD,{STAMP}\n"
        "cut off,12\n"
        f"G01.T0002,1,yesterday,GOOD,{STAMP}\n"
        f"G01.T0003,1,{STAMP},FINE,{STAMP}\n"
        f"{'X' * 101},1,{STAMP},GOOD,{STAMP}\n"
        f"G01.T0004,1,{STAMP},GOOD,{STAMP},surplus\n"
        f",1,{STAMP},GOOD,{STAMP}\n"
        f"G01.T0005,2,{STAMP},GOOD,{STAMP}\n"
    )
    parsed = _parsed(body)
    damaged = [p for p in parsed if isinstance(p, Damaged)]
    assert [p.line for p in parsed if isinstance(p, Row)] == [2, 9]
    assert [(d.line, d.reason) for d in damaged] == [
        (3, "expected 5 fields, found 2"),
        (4, "timestamp 'yesterday' is not ISO 8601"),
        (5, "quality must be GOOD or BAD, got 'FINE'"),
        (6, "tag name is 101 characters, the limit is 100"),
        (7, "expected 5 fields, found 6"),
        (8, "tag name is empty"),
    ]
    assert damaged[0].fields == ["cut off", "12"]


def test_bytes_that_are_not_utf8_damage_only_their_line() -> None:
    body = (
        f"G01.T0001,1,{STAMP},GOOD,{STAMP}\n".encode()
        + b"G01.T\xff\xfe,1,"
        + (f"{STAMP},GOOD,{STAMP}\nG01.T0003,3,{STAMP},GOOD,{STAMP}\n".encode())
    )
    parsed = _parsed(body)
    assert [(type(p).__name__, p.line) for p in parsed] == [("Row", 2), ("Damaged", 3), ("Row", 4)]
    assert parsed[1].reason == "not valid UTF-8"  # type: ignore[union-attr]


def test_a_last_line_cut_in_the_middle_is_damaged_not_guessed() -> None:
    parsed = _parsed(f"G01.T0001,1,{STAMP},GOOD,{STAMP}\nG01.T0002,4")
    assert isinstance(parsed[0], Row)
    assert isinstance(parsed[1], Damaged) and parsed[1].line == 3


def test_a_rejected_file_reads_back_too() -> None:
    handle = _file(f"G01.T0001,7,{STAMP},GOOD,{STAMP},2290,check failed\n", ",".join(REJECTED_HEADER) + "\n")
    kind, offset = read_header(handle)
    assert kind is SpoolKind.REJECTED
    (parsed,) = [parse_record(r, kind) for r in records(handle, offset=offset)]
    assert isinstance(parsed, Row) and parsed.value.value == 7


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"time,tag,value\n1,2,3\n", "not a backup file"),
        (b"tag_name,tag_value,timestamp,quality\n", "not a backup file"),
    ],
)
def test_a_file_without_the_backup_header_is_refused(content: bytes, message: str) -> None:
    with pytest.raises(NotABackupFile, match=message):
        read_header(io.BytesIO(content))


def test_a_header_with_a_byte_order_mark_is_accepted() -> None:
    kind, _ = read_header(io.BytesIO(b"\xef\xbb\xbf" + HEADER.encode()))
    assert kind is SpoolKind.BACKUP


def test_chunks_cover_the_file_and_a_reader_can_resume_after_any_of_them(tmp_path: Path) -> None:
    values = sample_values(1234)
    path = write_backup(tmp_path, values)
    with open(path, "rb") as handle:
        kind, offset = read_header(handle)
        all_chunks = list(chunks(handle, kind, 500, offset=offset))
        assert [len(c.rows) for c in all_chunks] == [500, 500, 234]
        assert [row.value for c in all_chunks for row in c.rows] == values
        middle = all_chunks[0]
        rest = list(chunks(handle, kind, 500, offset=middle.end_offset, line=middle.end_line))
    assert [row.value for c in rest for row in c.rows] == values[500:]
    assert rest[0].rows[0].line == middle.end_line + 1 == 502
    assert all_chunks[-1].end_offset == path.stat().st_size


_lines = st.lists(
    st.one_of(
        st.just(f"G01.T0001,12.5,{STAMP},GOOD,x"),
        st.just(f"G01.T0002,RUNNING,{STAMP},GOOD,x"),
        st.just("G01.T0001,,2026-03-01T08:00:01.000000+00:00,BAD,x"),
        st.just(f"Kühler.T1,7,{STAMP},GOOD,x"),  # not ASCII: offsets count bytes
        st.just(f'"tank ""A"", level",1.5,{STAMP},GOOD,x'),  # quoted: read by the csv module
        st.just(""),  # a blank line
        st.just(f"too,few,{STAMP}"),
        st.just("G01.T0003,1,yesterday,GOOD,x"),
        st.just(f"G01.T0004,1,{STAMP},MAYBE,x"),
        st.just(f"{'N' * 101},1,{STAMP},GOOD,x"),  # a name too long
        st.just(f"G01.T0005,{'x' * 1200},{STAMP},GOOD,x"),
        st.just(f"G01.T0006,1e+20,{STAMP},GOOD,x"),
    ),
    max_size=40,
)


def _by_record(data: bytes, batch_size: int) -> list[tuple[list[object], list[object], int, int]]:
    """The reference: every record through the csv module and :func:`parse_record`."""
    handle = io.BytesIO(data)
    kind, offset = read_header(handle)
    grouped, rows, damaged, end = [], [], [], (1, offset)
    for record in records(handle, offset=offset):
        parsed = parse_record(record, kind)
        (rows if isinstance(parsed, Row) else damaged).append(parsed)
        end = (record.end_line, record.end_offset)
        if len(rows) >= batch_size:
            grouped.append((rows, damaged, *end))
            rows, damaged = [], []
    if rows or damaged:
        grouped.append((rows, damaged, *end))
    return grouped


@settings(max_examples=150, deadline=None)
@given(
    body=_lines,
    last_line_end=st.booleans(),
    block=st.sampled_from([16, 64, 1 << 20]),
    batch=st.integers(1, 7),
)
def test_plain_blocks_read_fast_give_what_the_csv_module_gives(
    body: list[str], last_line_end: bool, block: int, batch: int
) -> None:
    text = "\n".join(body) + ("\n" if last_line_end and body else "")
    data = (HEADER + text).encode("utf-8")
    with patch.object(reader_module, "BLOCK_BYTES", block):
        handle = io.BytesIO(data)
        kind, offset = read_header(handle)
        fast = [
            (c.rows, c.damaged, c.end_line, c.end_offset) for c in chunks(handle, kind, batch, offset=offset)
        ]
    assert fast == _by_record(data, batch)
