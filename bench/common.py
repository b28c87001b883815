"""Shared helpers for the benchmark scripts: the machine they ran on, and test data."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from collector.interpreter import BULK_FIRST_THRESHOLD, GIL_SWITCH_INTERVAL_S, InterpreterTuning
from collector.model import TagValue

PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
"""The PostgreSQL server every development machine runs (trust authentication)."""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    python = sys.version.split()[0]
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), Python {python}"


def polls(count: int, tags_per_poll: int = 100, start: datetime | None = None) -> list[list[TagValue]]:
    """``count`` polls of ``tags_per_poll`` values sharing one timestamp each, as polls arrive."""
    t0 = start or datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for p in range(count):
        stamp = t0 + timedelta(milliseconds=p)
        out.append(
            [TagValue(f"G{p % 10:02d}.T{t:04d}", float(t) + p * 0.001, stamp) for t in range(tags_per_poll)]
        )
    return out


class PostgresScratchTable:
    """A table made with the project's own PostgreSQL DDL, emptied on request, dropped on exit."""

    def __init__(self, prefix: str) -> None:
        import psycopg

        from collector.sinks import schema_ddl

        self.name = f"{prefix}_{os.getpid()}"
        self._conn = psycopg.connect(PG_DSN, autocommit=True)
        self._conn.execute(schema_ddl("postgresql", self.name).encode())

    def truncate(self) -> None:
        self._conn.execute(f"TRUNCATE {self.name}".encode())

    def drop(self) -> None:
        self._conn.execute(f"DROP TABLE IF EXISTS {self.name}".encode())
        self._conn.close()

    def __enter__(self) -> PostgresScratchTable:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.drop()


def sink_section(kind: str, directory: Path, table: str = "TAG_DATA") -> dict[str, Any]:
    """The configuration's ``sink`` section for a benchmark run into ``kind``."""
    if kind == "postgresql":
        return {"type": "postgresql", "dsn": PG_DSN, "table": table}
    return {"type": "sqlite", "path": str(directory / "tags.db")}


def plain_sqlite(path: Path, values: list[TagValue], batch: int = 500) -> float:
    """Values per second of plain ``executemany`` of ready-made rows into a SQLite table with the
    project's schema and pragmas (made if the file is new), one transaction per batch: the baseline
    the benchmarks divide by."""
    from collector.sinks.sqlite import configure_connection, ddl, sqlite_row

    rows = [sqlite_row(v) for v in values]
    conn = sqlite3.connect(path, isolation_level=None)
    configure_connection(conn)
    conn.executescript(ddl())
    stored = conn.execute("SELECT count(*) FROM TAG_DATA").fetchone()[0]
    insert = (
        "INSERT INTO TAG_DATA (tag_name, tag_value, tag_value_text, timestamp, quality) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tag_name, timestamp) DO NOTHING"
    )
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, rows[i : i + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    assert conn.execute("SELECT count(*) FROM TAG_DATA").fetchone()[0] == stored + len(rows)
    conn.close()
    return len(rows) / elapsed


PG_COLUMNS = "tag_name, tag_value, tag_value_text, timestamp, quality"


def plain_copy(table: str, values: list[TagValue], batch: int = 500) -> float:
    """Values per second of plain ``COPY`` of ready-made rows into ``table`` (empty, the project's
    schema), one transaction per batch, one connection: PostgreSQL's fastest plain path, and the
    baseline the benchmarks divide by. It cannot skip duplicates."""
    import psycopg

    from collector.sinks.postgresql import pg_row

    rows = [pg_row(v) for v in values]
    with psycopg.connect(PG_DSN) as conn:
        stored = count_rows(conn, table)
        started = time.perf_counter()
        for i in range(0, len(rows), batch):
            statement = f"COPY {table} ({PG_COLUMNS}) FROM STDIN".encode()
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows[i : i + batch]:
                    copy.write_row(row)
            conn.commit()
        elapsed = time.perf_counter() - started
        assert count_rows(conn, table) == stored + len(rows)
    return len(rows) / elapsed


def count_rows(conn: Any, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone()
    assert row is not None
    return int(row[0])


STEADY_ROWS_PER_TAG = 200
"""Rows per tag a table is filled with before it is timed. An insert's cost depends on how many
rows each tag already has: a batch's rows land in as many places of the primary key (tag,
timestamp) as it has tags, and every page they change is written to the database's log at commit.
Into SQLite the rate falls about fourfold from a fresh table to 150 to 200 rows per tag, then
stays (docs/benchmarks.md, "A table's steady state"); a plant's table is past that within minutes
and stays there for the rest of its life."""


def plant_names(tags: int, groups: int = 10) -> list[str]:
    """The tag names the service's simulator gives a plant of ``tags`` tags in ``groups`` groups."""
    from collector.sources.simulator import split_tags, tag_name

    return [
        tag_name(group, tag) for group, size in enumerate(split_tags(tags, groups)) for tag in range(size)
    ]


def steady_state_rows(names: list[str], rows_per_tag: int, end: datetime) -> list[TagValue]:
    """``rows_per_tag`` values of each name, one a second up to ``end``, in key order: what a table
    is filled with before it is timed (see :data:`STEADY_ROWS_PER_TAG`)."""
    stamps = [end - timedelta(seconds=rows_per_tag - i) for i in range(rows_per_tag)]
    return [TagValue(name, float(i), stamp) for name in sorted(names) for i, stamp in enumerate(stamps)]


def fill_plant(kind: str, target: Path | str, tags: int, rows_per_tag: int) -> None:
    """Fill ``target`` (see :func:`fill_table`) with ``rows_per_tag`` rows of each tag of the
    simulator's plant of ``tags`` tags, stamped a month ago: a table in its steady state."""
    month_ago = datetime.now(UTC) - timedelta(days=30)
    fill_table(kind, target, steady_state_rows(plant_names(tags), rows_per_tag, month_ago))


def fill_table(kind: str, target: Path | str, values: list[TagValue]) -> None:
    """Insert ``values`` untimed in one transaction: into the SQLite file ``target`` (made with the
    project's schema if new) or the PostgreSQL table ``target``."""
    if not values:
        return
    if kind == "postgresql":
        plain_copy(str(target), values, batch=len(values))
    else:
        plain_sqlite(Path(target), values, batch=len(values))


class _Drainable(Protocol):
    def put_many(self, values: list[TagValue]) -> Any: ...


@contextmanager
def as_the_service_runs() -> Iterator[None]:
    """The interpreter's settings the service runs with (its switch interval, fewer cyclic
    collections: :mod:`collector.interpreter`), for a pipeline built here without the service."""
    tuning = InterpreterTuning(GIL_SWITCH_INTERVAL_S, BULK_FIRST_THRESHOLD)
    tuning.apply()
    try:
        yield
    finally:
        tuning.restore()


def timed_drain(buffer: _Drainable, writer: Any, data: list[list[TagValue]], total: int) -> float:
    """Seconds from the first poll put into ``buffer`` until ``writer`` has written ``total`` values,
    with the interpreter set as the service sets it."""
    with as_the_service_runs():
        started = time.perf_counter()
        for poll in data:
            buffer.put_many(poll)
        while writer.stats().written < total:
            time.sleep(0.001)
        return time.perf_counter() - started
