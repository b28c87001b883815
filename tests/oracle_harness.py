"""The Oracle sink over the driver double, packaged for tests shared by every sink.

:func:`oracle_harness` builds an :class:`~collector.sinks.oracle.OracleSink` writing into a fresh
``TAG_DATA`` created from the collector's own DDL in a fresh double, and a reader that returns every
stored row in one normalised form (the number column as an exact ``Decimal``, the timestamp as an
aware UTC datetime), so that assertions written for any database hold for Oracle too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

from collector.sinks.oracle import OracleSink, ddl
from tests.oracle_double import FakeOracle


class StoredRow(NamedTuple):
    tag_name: str
    number: Decimal | None
    text: str | None
    timestamp: datetime
    quality: str


@dataclass
class OracleHarness:
    sink: OracleSink
    stored: Callable[[], list[StoredRow]]
    db: FakeOracle
    max_integer: int | None = None
    """NUMBER holds 38 digits: ``split_value``'s default."""
    empty_text_is_null: bool = True
    """Oracle has no empty string: ``''`` is stored as NULL."""


@contextmanager
def oracle_harness(*_ignored: object) -> Iterator[OracleHarness]:
    db = FakeOracle()
    db.execute_ddl(ddl())
    sink = OracleSink(
        dsn="localhost:1521/FREEPDB1",
        user="app",
        password="app-secret",
        driver=db,
        call_timeout_s=5,
        pool_wait_timeout_s=5,
    )

    def stored() -> list[StoredRow]:
        return [
            StoredRow(
                str(row["TAG_NAME"]),
                None if row["TAG_VALUE"] is None else Decimal(str(row["TAG_VALUE"])),
                None if row["TAG_VALUE_TEXT"] is None else str(row["TAG_VALUE_TEXT"]),
                row["TIMESTAMP"].replace(tzinfo=UTC),  # type: ignore[union-attr]
                str(row["QUALITY"]),
            )
            for row in db.rows()
        ]

    try:
        yield OracleHarness(sink, stored, db)
    finally:
        sink.close()
