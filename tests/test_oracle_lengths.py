"""Lengths as Oracle counts them: bytes unless a column is declared in characters, and never more
than 4 000 bytes in a VARCHAR2 with ``MAX_STRING_SIZE=STANDARD``.

A value over its column's limit is refused before it reaches the database, with the reason: at
intake for what no supported table can hold (text over 4 000 bytes in UTF-8), in the sink for what
this table cannot hold (a column declared in bytes, or narrower than the collector's DDL).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import oracledb
import pytest

from collector.config import Config
from collector.model import MAX_TEXT_BYTES, PollingData, TagValue, validation_error
from collector.service import CollectorService
from collector.sinks.base import ColumnSpec
from collector.sinks.oracle import VALUE_TOO_LARGE, OracleSink, ddl
from collector.sinks.oracle_schema import ColumnInfo, TableName, TextLimit, check_columns, layout_for
from tests.oracle_double import FakeOracle

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
DSN = "localhost:1521/FREEPDB1"
ACCENTED = "é" * 2500
"""2 500 characters, 5 000 bytes in UTF-8: fits VARCHAR2(4000 CHAR) by count, not by bytes."""


def design_with(**replacements: str) -> str:
    text = ddl()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    return text


def sink_over(db: FakeOracle) -> OracleSink:
    return OracleSink(dsn=DSN, user="app", password="app-secret", driver=db, call_timeout_s=1)


# ---------------------------------------------------------------------- intake


def test_intake_counts_text_in_utf8_bytes() -> None:
    assert len(ACCENTED) < MAX_TEXT_BYTES < len(ACCENTED.encode())
    assert validation_error("T", ACCENTED, "GOOD") == (
        "text value is 5000 bytes in UTF-8, the limit is 4000 bytes"
    )
    assert validation_error("T", "é" * 2000, "GOOD") is None  # exactly 4 000 bytes


def test_intake_sends_text_over_4000_bytes_to_the_rejected_csv_with_the_reason(tmp_path: Path) -> None:
    db = FakeOracle()
    db.execute_ddl(ddl())
    config = Config.model_validate(
        {
            "source": {"type": "external"},
            "sink": {"type": "oracle", "dsn": DSN, "user": "app", "password": "app-secret"},
            "writer": {"flush_interval_s": 0.02, "workers": 1},
            "backup": {"dir": str(tmp_path)},
            "api": {"enabled": False},
        }
    )
    service = CollectorService(config, sink=sink_over(db))
    service.start()
    try:
        service.data_queue.put(PollingData("G", T0, {"T.LONG": ACCENTED, "T.SHORT": "é" * 10}))
    finally:
        report = service.stop()
    assert [row["TAG_NAME"] for row in db.rows()] == ["T.SHORT"]
    (rejected_file,) = tmp_path.glob("rejected_*.csv")
    with rejected_file.open(newline="", encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["tag_name"] == "T.LONG"
    assert row["tag_value"] == ACCENTED  # kept whole for the operator, never truncated
    assert "5000 bytes in UTF-8" in row["reason"]
    assert report.snapshot.balanced() and report.snapshot.rejected == 1


# ---------------------------------------------------------------------- the double, as Oracle


def test_the_double_counts_bytes_unless_the_column_is_declared_in_characters() -> None:
    db = FakeOracle()
    # The design table (CHAR) beside one declared as many DBAs do, in the default BYTE semantics.
    db.execute_ddl(ddl())
    db.execute_ddl(ddl("BYTES").replace(" CHAR)", ")"))
    conn = db.create_pool(user="app", password="app-secret", dsn=DSN, min=1, max=1).acquire()
    cursor = conn.cursor()
    cursor.setinputsizes(100, oracledb.DB_TYPE_NUMBER, 4000, oracledb.DB_TYPE_TIMESTAMP, 20)
    rows = [
        ("é" * 60, None, "ok", T0.replace(tzinfo=None), "GOOD"),  # 60 characters, 120 bytes
        ("T2", None, ACCENTED, T0.replace(tzinfo=None), "GOOD"),  # 2 500 characters, 5 000 bytes
        ("T3", None, "é" * 2000, T0.replace(tzinfo=None), "GOOD"),  # 4 000 bytes exactly
    ]
    outcomes = {}
    for table in ("TAG_DATA", "BYTES"):
        insert = layout_for(table, ColumnSpec()).insert_sql
        cursor.executemany(insert, rows, batcherrors=True)
        outcomes[table] = {error.offset: error.full_code for error in cursor.getbatcherrors()}
    conn.commit()
    assert outcomes == {"TAG_DATA": {1: "ORA-12899"}, "BYTES": {0: "ORA-12899", 1: "ORA-12899"}}

    dictionary = "SELECT column_name, char_used, char_length, data_length FROM user_tab_columns"
    seen = {}
    for table in ("TAG_DATA", "BYTES"):
        cursor.execute(f"{dictionary} WHERE table_name = :table_name", {"table_name": table})
        seen[table] = {row[0]: row[1:] for row in cursor.fetchall()}
    assert seen["TAG_DATA"]["TAG_NAME"] == ("C", 100, 400)
    assert seen["TAG_DATA"]["TAG_VALUE_TEXT"] == ("C", 4000, 4000)  # STANDARD caps the bytes
    assert seen["BYTES"]["TAG_NAME"] == ("B", 100, 100)
    assert seen["TAG_DATA"]["TAG_VALUE"] == (None, 0, 22)


def test_the_double_refuses_a_byte_length_beyond_max_string_size() -> None:
    db = FakeOracle()
    with pytest.raises(oracledb.DatabaseError, match="ORA-00910"):
        db.execute_ddl(ddl().replace("VARCHAR2(4000 CHAR)", "VARCHAR2(8000)"))


# ---------------------------------------------------------------------- the schema check


def test_the_check_reads_each_columns_semantics_from_the_dictionary() -> None:
    table = TableName.parse("TAG_DATA")
    char = ColumnInfo("TAG_NAME", "VARCHAR2", 100, char_used="C", data_length=400)
    byte = ColumnInfo("TAG_NAME", "VARCHAR2", 100, char_used="B", data_length=100)
    text = ColumnInfo("TAG_VALUE_TEXT", "VARCHAR2", 4000, char_used="C", data_length=4000)
    national = ColumnInfo("TAG_NAME", "NVARCHAR2", 100, char_used="C", data_length=200)
    assert char.text_limit(table) == TextLimit("TAG_DATA.TAG_NAME", chars=100, bytes=400)
    assert byte.text_limit(table) == TextLimit("TAG_DATA.TAG_NAME", chars=None, bytes=100)
    assert text.text_limit(table) == TextLimit("TAG_DATA.TAG_VALUE_TEXT", chars=4000, bytes=4000)
    assert national.text_limit(table) == TextLimit("TAG_DATA.TAG_NAME", chars=100, bytes=None)

    limit = text.text_limit(table)
    assert limit.refusal("é" * 2000) is None
    assert limit.refusal(ACCENTED) == (
        "value too large for column TAG_DATA.TAG_VALUE_TEXT "
        "(actual: 5000 bytes in UTF-8, maximum: 4000 bytes)"
    )
    assert byte.text_limit(table).refusal("é" * 51) is not None  # 102 bytes
    assert byte.text_limit(table).refusal("e" * 100) is None


def test_a_tag_name_column_declared_in_bytes_is_checked_and_named_in_a_warning() -> None:
    db = FakeOracle()
    db.execute_ddl(ddl().replace('"TAG_NAME"       VARCHAR2(100 CHAR)', '"TAG_NAME"       VARCHAR2(100)'))
    sink = sink_over(db)
    try:
        sink.ping()
        layout = sink.layout
        assert layout is not None
        (warning,) = layout.warnings
        assert "TAG_DATA.TAG_NAME holds 100 bytes" in warning and "VARCHAR2(100 CHAR)" in warning
        result = sink.write([TagValue("é" * 60, 1.0, T0), TagValue("e" * 100, 2.0, T0)])
    finally:
        sink.close()
    assert result.written == 1
    (error,) = result.rejected
    assert (error.index, error.code) == (0, VALUE_TOO_LARGE)
    assert "actual: 120 bytes in UTF-8, maximum: 100 bytes" in error.message
    assert [row["TAG_NAME"] for row in db.rows()] == ["e" * 100]


def test_the_design_table_needs_no_per_row_check_of_names_and_a_warning_for_nothing() -> None:
    db = FakeOracle()
    db.execute_ddl(ddl())
    sink = sink_over(db)
    try:
        sink.ping()
        assert sink.layout is not None and sink.layout.warnings == ()
        # The tag name holds any 100 characters; only the text column is measured per row.
        assert [position for position, _ in sink.layout.checked_binds()] == [2]
    finally:
        sink.close()


# ---------------------------------------------------------------------- the sink


def test_the_sink_refuses_text_over_the_columns_bytes_before_sending() -> None:
    db = FakeOracle()
    db.execute_ddl(ddl())
    sink = sink_over(db)
    batch = [TagValue("T1", ACCENTED, T0), TagValue("T2", "é" * 2000, T0), TagValue("T3", 1.5, T0)]
    try:
        result = sink.write(batch)
    finally:
        sink.close()
    assert (result.written, result.duplicates) == (2, 0)
    (error,) = result.rejected
    assert (error.index, error.code) == (0, VALUE_TOO_LARGE)
    assert "5000 bytes in UTF-8, maximum: 4000 bytes" in error.message
    # Refused on the client: the database never saw the row, so nothing else of the batch was lost.
    assert db.bind_types and db.executemany_calls == 1
    assert sorted(str(row["TAG_NAME"]) for row in db.rows()) == ["T2", "T3"]


def test_a_narrow_text_column_rejects_longer_text_and_says_so() -> None:
    rows = [
        ColumnInfo("TAG_NAME", "VARCHAR2", 100, None, None, nullable=False, char_used="C", data_length=400),
        ColumnInfo("TAG_VALUE", "NUMBER", data_length=22),
        ColumnInfo("TAG_VALUE_TEXT", "VARCHAR2", 200, char_used="B", data_length=200),
        ColumnInfo("TIMESTAMP", "TIMESTAMP(6)", 0, None, 6, nullable=False),
        ColumnInfo("QUALITY", "VARCHAR2", 20, nullable=False, char_used="C", data_length=80),
    ]
    layout = check_columns("TAG_DATA", ColumnSpec(), rows)
    (warning,) = layout.warnings
    assert "TAG_DATA.TAG_VALUE_TEXT holds 200 bytes" in warning
