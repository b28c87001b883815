"""Every sink the shared contract suite (test_sink_contract.py) runs against.

A harness is a sink writing into a fresh, empty table, plus a way to read back every stored row
in one normalised form, so the same assertions hold for every database. Adding a sink to the
contract is one entry in :data:`HARNESSES`: a context manager that builds the sink and its reader.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import pytest

from collector.sinks import oracle
from collector.sinks.base import Sink
from collector.sinks.postgresql import PostgresSink
from collector.sinks.sqlite import SQLITE_MAX_INTEGER, SqliteSink
from tests import pg
from tests.oracle_double import FakeOracle


class StoredRow(NamedTuple):
    """A row as the database holds it: the number column as an exact Decimal, the timestamp as an
    aware UTC datetime."""

    tag_name: str
    number: Decimal | None
    text: str | None
    timestamp: datetime
    quality: str


@dataclass
class Harness:
    sink: Sink
    stored: Callable[[], list[StoredRow]]
    """Every row in the sink's table."""
    max_integer: int | None = None
    """The ``max_integer`` the sink passes to ``split_value`` (None: NUMBER's 38 digits)."""
    empty_text_is_null: bool = False
    """The database stores an empty string as NULL (Oracle does)."""


HarnessFactory = Callable[[pytest.FixtureRequest, Path], AbstractContextManager[Harness]]


def _decimal(number: object) -> Decimal | None:
    if number is None:
        return None
    if isinstance(number, float):
        return Decimal(repr(number))
    return Decimal(str(number))


@contextmanager
def sqlite_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    path = tmp_path / "contract.db"
    sink = SqliteSink(path, table="TAG_DATA")

    def stored() -> list[StoredRow]:
        with sqlite3.connect(path) as conn:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'TAG_DATA'").fetchone():
                return []  # the sink opens its file, and creates the table, on first use
            rows = conn.execute(
                "SELECT tag_name, tag_value, tag_value_text, timestamp, quality FROM TAG_DATA"
            ).fetchall()
        return [
            StoredRow(
                name,
                _decimal(number),
                text,
                datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC),
                quality,
            )
            for name, number, text, stamp, quality in rows
        ]

    try:
        yield Harness(sink, stored, max_integer=SQLITE_MAX_INTEGER)
    finally:
        sink.close()


@contextmanager
def postgres_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    request.getfixturevalue("postgres_server")
    pg.server_ready(pg.WAIT_FOR_SERVER_S)
    with pg.scratch_table() as table:
        sink = PostgresSink(pg.PG_DSN, table=table, pool_size=2)

        def stored() -> list[StoredRow]:
            with pg.connect() as conn:
                rows = conn.execute(
                    f"SELECT tag_name, tag_value::text, tag_value_text, timestamp, quality FROM {table}"  # type: ignore[arg-type]
                ).fetchall()
            return [
                StoredRow(
                    str(name),
                    _decimal(number),
                    None if text is None else str(text),
                    stamp.astimezone(UTC),  # type: ignore[attr-defined]
                    str(quality),
                )
                for name, number, text, stamp, quality in rows
            ]

        try:
            yield Harness(sink, stored)
        finally:
            sink.close()


@contextmanager
def oracle_double_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The Oracle sink over the python-oracledb double (tests/oracle_double.py), writing into a
    TAG_DATA created from the collector's own Oracle DDL."""
    db = FakeOracle()
    db.execute_ddl(oracle.ddl())
    sink = oracle.OracleSink(
        dsn="localhost:1521/FREEPDB1",
        user="app",
        password="app-secret",
        driver=db,
        call_timeout_s=10,
        pool_wait_timeout_s=10,
    )

    def stored() -> list[StoredRow]:
        return [
            StoredRow(
                str(row["TAG_NAME"]),
                _decimal(row["TAG_VALUE"]),
                None if row["TAG_VALUE_TEXT"] is None else str(row["TAG_VALUE_TEXT"]),
                row["TIMESTAMP"].replace(tzinfo=UTC),  # type: ignore[union-attr]
                str(row["QUALITY"]),
            )
            for row in db.rows()
        ]

    try:
        yield Harness(sink, stored, empty_text_is_null=True)
    finally:
        sink.close()


HARNESSES = [
    pytest.param(sqlite_harness, id="sqlite"),
    pytest.param(postgres_harness, id="postgresql", marks=pytest.mark.postgres),
    pytest.param(oracle_double_harness, id="oracle-double"),
]
"""One entry per sink under the shared contract."""
