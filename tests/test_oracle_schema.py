"""The Oracle DDL (FR-013 to FR-015) and the start-up check of a live table's columns."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from collector.sinks.base import ColumnSpec, PermanentSinkError
from collector.sinks.oracle import ddl
from collector.sinks.oracle_schema import (
    ColumnInfo,
    TableName,
    ValueMode,
    check_columns,
    ddl_statements,
    quote_identifier,
)
from tests.oracle_double import FakeOracle

REPO = Path(__file__).resolve().parents[1]


def design_table() -> list[ColumnInfo]:
    """The dictionary rows of the table the DDL creates, as Oracle reports them."""
    return [
        ColumnInfo("TAG_NAME", "VARCHAR2", 100, None, None, nullable=False, char_used="C", data_length=400),
        ColumnInfo("TAG_VALUE", "NUMBER", data_length=22),
        ColumnInfo("TAG_VALUE_TEXT", "VARCHAR2", 4000, char_used="C", data_length=4000),
        ColumnInfo("TIMESTAMP", "TIMESTAMP(6)", 0, None, 6, nullable=False, data_length=11),
        ColumnInfo("QUALITY", "VARCHAR2", 20, nullable=False, char_used="C", data_length=80),
    ]


def test_ddl_has_the_key_the_index_and_the_value_columns() -> None:
    text = ddl()
    flat = " ".join(text.split())
    assert 'CREATE TABLE "TAG_DATA"' in flat
    assert '"TAG_NAME" VARCHAR2(100 CHAR) NOT NULL' in flat
    assert '"TAG_VALUE" NUMBER,' in flat
    assert '"TAG_VALUE_TEXT" VARCHAR2(4000 CHAR)' in flat
    assert '"TIMESTAMP" TIMESTAMP(6) NOT NULL' in flat
    assert '"QUALITY" VARCHAR2(20 CHAR) NOT NULL' in flat
    assert 'PRIMARY KEY ("TAG_NAME", "TIMESTAMP")' in flat  # FR-014
    assert 'CREATE INDEX "TAG_DATA_TIMESTAMP_IX" ON "TAG_DATA" ("TIMESTAMP");' in flat  # FR-015
    # Every statement ends with a terminator SQL*Plus runs.
    assert len(re.findall(r";\n", text)) == 2


def test_ddl_follows_configured_names_and_schema() -> None:
    columns = ColumnSpec(timestamp="collected_at", tag_value="val")
    flat = " ".join(ddl("plant.readings", columns).split())
    assert 'CREATE TABLE "PLANT"."READINGS"' in flat
    assert 'PRIMARY KEY ("TAG_NAME", "COLLECTED_AT")' in flat
    assert 'CREATE INDEX "PLANT"."READINGS_COLLECTED_AT_IX" ON "PLANT"."READINGS" ("COLLECTED_AT")' in flat
    assert '"VAL" NUMBER' in flat


def test_the_ddl_creates_a_table_the_check_accepts() -> None:
    db = FakeOracle()
    db.execute_ddl(ddl())
    table = db.table("TAG_DATA")
    assert table.primary_key == ("TAG_NAME", "TIMESTAMP")
    assert ("APP", "TAG_DATA_TIMESTAMP_IX") in db.indexes
    infos = [
        ColumnInfo(c.name, c.dictionary_type, c.length, c.precision, c.scale, c.nullable)
        for c in table.columns.values()
    ]
    layout = check_columns("TAG_DATA", ColumnSpec(), infos)
    assert layout.mode is ValueMode.SPLIT


def test_keywords_and_reserved_words_are_quoted() -> None:
    assert quote_identifier("timestamp") == '"TIMESTAMP"'
    assert quote_identifier("date") == '"DATE"'
    statements = ddl_statements("TAG_DATA", ColumnSpec(timestamp="date"))
    assert re.search(r'"DATE"\s+TIMESTAMP\(6\) NOT NULL', statements[0])
    # ...and the double, which parses the DDL like the server would, accepts it.
    db = FakeOracle()
    db.execute_ddl(";\n".join(statements))
    assert db.table("TAG_DATA").primary_key == ("TAG_NAME", "DATE")
    for bad in ('x"; DROP TABLE t; --', "two words", ""):
        with pytest.raises(ValueError, match="identifier"):
            quote_identifier(bad)
    with pytest.raises(ValueError):
        TableName.parse("a.b.c")


def test_schema_command_prints_the_oracle_ddl() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env = {k: v for k, v in env.items() if not k.startswith(("ORACLE_", "COLLECTOR_"))}
    done = subprocess.run(
        [sys.executable, "-m", "collector", "schema", "--dialect", "oracle", "--no-env-file"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ddl()


def test_the_design_table_is_written_split() -> None:
    layout = check_columns("TAG_DATA", ColumnSpec(), design_table())
    assert layout.mode is ValueMode.SPLIT
    assert layout.columns == ("TAG_NAME", "TAG_VALUE", "TAG_VALUE_TEXT", "TIMESTAMP", "QUALITY")
    assert layout.insert_sql == (
        'INSERT INTO "TAG_DATA" ("TAG_NAME", "TAG_VALUE", "TAG_VALUE_TEXT", "TIMESTAMP", "QUALITY") '
        "VALUES (:1, :2, :3, :4, :5)"
    )
    assert layout.warnings == ()


def test_missing_table_is_named() -> None:
    with pytest.raises(PermanentSinkError, match=r"table APP\.TAG_DATA does not exist") as info:
        check_columns("app.tag_data", ColumnSpec(), [])
    assert info.value.code == "ORA-00942"


def test_missing_column_is_named() -> None:
    rows = [c for c in design_table() if c.name != "QUALITY"]
    with pytest.raises(PermanentSinkError, match="has no column QUALITY") as info:
        check_columns("TAG_DATA", ColumnSpec(), rows)
    assert info.value.code == "ORA-00904"


def test_a_varchar_tag_value_makes_a_text_only_table() -> None:
    rows = [ColumnInfo("TAG_NAME", "VARCHAR2", 100), ColumnInfo("TAG_VALUE", "VARCHAR2", 4000)]
    rows += [c for c in design_table() if c.name in {"TIMESTAMP", "QUALITY"}]
    layout = check_columns("TAG_DATA", ColumnSpec(), rows)
    assert layout.mode is ValueMode.TEXT_ONLY
    assert layout.binds == ("name", "text", "timestamp", "quality")


def test_a_table_without_text_column_is_number_only_and_says_so() -> None:
    rows = [c for c in design_table() if c.name != "TAG_VALUE_TEXT"]
    layout = check_columns("TAG_DATA", ColumnSpec(), rows)
    assert layout.mode is ValueMode.NUMBER_ONLY
    assert any("no TAG_VALUE_TEXT column" in w for w in layout.warnings)


@pytest.mark.parametrize(
    "stamp",
    [
        ColumnInfo("TIMESTAMP", "DATE"),
        ColumnInfo("TIMESTAMP", "TIMESTAMP(3)", scale=3),
        ColumnInfo("TIMESTAMP", "TIMESTAMP(6) WITH TIME ZONE", scale=6),
    ],
)
def test_timestamp_columns_that_would_alter_readings_are_refused(stamp: ColumnInfo) -> None:
    rows = [c if c.name != "TIMESTAMP" else stamp for c in design_table()]
    with pytest.raises(PermanentSinkError, match="TIMESTAMP") as info:
        check_columns("TAG_DATA", ColumnSpec(), rows)
    assert info.value.code == "ORA-00932"


def test_a_scaled_number_column_is_accepted_with_a_warning() -> None:
    rows = [
        c if c.name != "TAG_VALUE" else ColumnInfo("TAG_VALUE", "NUMBER", 0, 10, 2) for c in design_table()
    ]
    layout = check_columns("TAG_DATA", ColumnSpec(), rows)
    assert any("NUMBER(10,2)" in w for w in layout.warnings)


def test_an_extra_not_null_column_without_default_is_refused() -> None:
    rows = [*design_table(), ColumnInfo("SITE", "VARCHAR2", 10, nullable=False)]
    with pytest.raises(PermanentSinkError, match="SITE is NOT NULL"):
        check_columns("TAG_DATA", ColumnSpec(), rows)
    with_default = [*design_table(), ColumnInfo("SITE", "VARCHAR2", 10, nullable=False, has_default=True)]
    assert check_columns("TAG_DATA", ColumnSpec(), with_default).mode is ValueMode.SPLIT


def test_renamed_columns_are_checked_by_their_configured_names() -> None:
    columns = ColumnSpec(timestamp="collected_at")
    rows = [
        c if c.name != "TIMESTAMP" else ColumnInfo("COLLECTED_AT", "TIMESTAMP(6)", scale=6)
        for c in design_table()
    ]
    layout = check_columns("TAG_DATA", columns, rows)
    assert "COLLECTED_AT" in layout.columns
