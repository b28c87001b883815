"""The Oracle sink against a real Oracle Database, wherever one is reachable.

Runs when ``ORACLE_DSN``, ``ORACLE_USER`` and ``ORACLE_PASSWORD`` are set (for example against the
compose stack: see docs/oracle.md) and is skipped, with that reason, otherwise. Each test works in a
scratch table of its own that it drops afterwards, so the suite can run against any schema.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import oracledb
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collector.model import Quality, TagValue
from collector.sinks.base import PermanentSinkError, TransientSinkError
from collector.sinks.login_guard import LoginBackoff, LoginGuard
from collector.sinks.oracle import OracleSink
from collector.sinks.oracle_errors import MAX_BATCH_ERRORS
from collector.sinks.oracle_schema import ddl_statements

DSN = os.environ.get("ORACLE_DSN", "")
USER = os.environ.get("ORACLE_USER", "")
PASSWORD = os.environ.get("ORACLE_PASSWORD", "")

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(
        not (DSN and USER and PASSWORD),
        reason="no live Oracle: set ORACLE_DSN, ORACLE_USER and ORACLE_PASSWORD (see docs/oracle.md)",
    ),
]

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def connection() -> Iterator[Any]:
    conn = oracledb.connect(user=USER, password=PASSWORD, dsn=DSN, tcp_connect_timeout=5)
    conn.call_timeout = 30_000
    yield conn
    conn.close()


@pytest.fixture
def scratch(connection: Any) -> Iterator[Callable[..., str]]:
    """Creates scratch tables from the collector's DDL (optionally edited) and drops them after."""
    created: list[str] = []

    def make(edit: Callable[[str], str] = lambda sql: sql) -> str:
        name = f"TAG_LIVE_{uuid.uuid4().hex[:10].upper()}"
        with connection.cursor() as cursor:
            for statement in ddl_statements(name):
                cursor.execute(edit(statement))
        created.append(name)
        return name

    yield make
    with connection.cursor() as cursor:
        for name in created:
            cursor.execute(f'DROP TABLE "{name}" PURGE')


@pytest.fixture
def make_sink() -> Iterator[Callable[..., OracleSink]]:
    made: list[OracleSink] = []

    def make(table: str, **overrides: Any) -> OracleSink:
        kwargs: dict[str, Any] = {"dsn": DSN, "user": USER, "password": PASSWORD, "table": table}
        kwargs.update(overrides)
        sink = OracleSink(**kwargs)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


def fetch(connection: Any, table: str) -> dict[str, tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT "TAG_NAME", TO_CHAR("TAG_VALUE", \'TM9\'), "TAG_VALUE_TEXT", "TIMESTAMP", "QUALITY" '
            f'FROM "{table}"'
        )
        return {row[0]: row[1:] for row in cursor.fetchall()}


def test_write_and_count(
    connection: Any, scratch: Callable[..., str], make_sink: Callable[..., OracleSink]
) -> None:
    table = scratch()
    sink = make_sink(table)
    sink.ping()
    batch = [TagValue(f"LIVE.{i:04d}", i + 0.5, T0) for i in range(500)]
    result = sink.write(batch)
    assert (result.written, result.duplicates, result.rejected) == (500, 0, [])
    assert len(fetch(connection, table)) == 500


def test_duplicates_are_skipped(
    connection: Any, scratch: Callable[..., str], make_sink: Callable[..., OracleSink]
) -> None:
    table = scratch()
    sink = make_sink(table)
    batch = [TagValue(f"DUP.{i}", float(i), T0) for i in range(20)]
    assert sink.write(batch).written == 20
    result = sink.write([*batch[:5], TagValue("DUP.NEW", 1.0, T0)])
    assert (result.written, result.duplicates) == (1, 5)
    assert len(fetch(connection, table)) == 21


def test_row_errors_are_rejected_with_their_codes_and_the_rest_committed(
    connection: Any, scratch: Callable[..., str], make_sink: Callable[..., OracleSink]
) -> None:
    narrow = {"NUMBER,": "NUMBER(5,2),", "VARCHAR2(4000 CHAR)": "VARCHAR2(10 CHAR)"}

    def edit(sql: str) -> str:
        for old, new in narrow.items():
            sql = sql.replace(old, new)
        return sql

    table = scratch(edit)
    sink = make_sink(table)
    batch = [
        TagValue("OK.1", 1.25, T0),
        TagValue("TOO.BIG", 12345.6, T0),  # NUMBER(5,2) holds at most 999.99: ORA-01438
        TagValue("TOO.LONG", "x" * 11, T0),  # VARCHAR2(10 CHAR): ORA-12899
        TagValue("OK.2", "RUN", T0),
    ]
    result = sink.write(batch)
    assert result.written == 2
    assert sorted((e.index, e.code) for e in result.rejected) == [(1, "ORA-01438"), (2, "ORA-12899")]
    assert sorted(fetch(connection, table)) == ["OK.1", "OK.2"]


def test_microseconds_and_time_zones_round_trip(
    connection: Any, scratch: Callable[..., str], make_sink: Callable[..., OracleSink]
) -> None:
    table = scratch()
    sink = make_sink(table)
    tokyo = timezone(timedelta(hours=9))
    batch = [
        TagValue("US.1", 1.0, T0.replace(microsecond=1)),
        TagValue("US.2", 2.0, T0.replace(microsecond=999_999)),
        TagValue("TZ", 3.0, T0.astimezone(tokyo)),
    ]
    assert sink.write(batch).written == 3
    rows = fetch(connection, table)
    assert rows["US.1"][2] == datetime(2026, 3, 1, 8, 30, 15, 1)
    assert rows["US.2"][2] == datetime(2026, 3, 1, 8, 30, 15, 999_999)
    assert rows["TZ"][2] == datetime(2026, 3, 1, 8, 30, 15, 123456)  # stored as UTC


@pytest.mark.parametrize(
    "value",
    [10**38 - 1, -(10**38 - 1), 1e-130, -1e-130, 9.99e125, 0.1, 123456789.123456, 0, True],
)
def test_number_edge_values_round_trip_exactly(
    connection: Any, scratch: Callable[..., str], make_sink: Callable[..., OracleSink], value: object
) -> None:
    table = scratch()
    sink = make_sink(table)
    assert sink.write([TagValue("EDGE", value, T0)]).written == 1  # type: ignore[arg-type]
    number_text, text, _, _ = fetch(connection, table)["EDGE"]
    expected = (
        Decimal(int(value))
        if isinstance(value, bool)
        else Decimal(repr(value) if isinstance(value, float) else str(value))
    )
    assert Decimal(number_text) == expected
    assert text is None


def test_values_number_cannot_hold_and_text_go_to_the_text_column(
    connection: Any, scratch: Callable[..., str], make_sink: Callable[..., OracleSink]
) -> None:
    table = scratch()
    sink = make_sink(table)
    batch = [
        TagValue("NAN", math.nan, T0),
        TagValue("INF", -math.inf, T0),
        TagValue("HUGE", 1e200, T0),
        TagValue("WIDE", 10**40 + 1, T0),
        TagValue("TEXT", "Ölpumpe läuft, 100 %", T0),
        TagValue("BAD", None, T0, Quality.BAD),
    ]
    assert sink.write(batch).written == len(batch)
    rows = fetch(connection, table)
    assert {name: rows[name][1] for name in rows} == {
        "NAN": "nan",
        "INF": "-inf",
        "HUGE": "1e+200",
        "WIDE": str(10**40 + 1),
        "TEXT": "Ölpumpe läuft, 100 %",
        "BAD": None,
    }
    assert all(rows[name][0] is None for name in rows)
    assert rows["BAD"][3] == "BAD"


def test_missing_table_and_bad_password_are_permanent(make_sink: Callable[..., OracleSink]) -> None:
    with pytest.raises(PermanentSinkError) as info:
        make_sink(f"NO_SUCH_{uuid.uuid4().hex[:8].upper()}").ping()
    assert info.value.code == "ORA-00942"
    with pytest.raises(PermanentSinkError) as info2:
        make_sink("TAG_DATA", password=PASSWORD + "-wrong").ping()
    assert info2.value.code == "ORA-01017"


# ---------------------------------------------------------------------- lengths in bytes


def test_the_check_reads_byte_semantics_and_refuses_what_the_database_would(
    connection: Any, scratch: Callable[..., str], make_sink: Callable[..., OracleSink]
) -> None:
    table = scratch(lambda sql: sql.replace("VARCHAR2(100 CHAR)", "VARCHAR2(100 BYTE)"))
    sink = make_sink(table)
    sink.ping()
    assert sink.layout is not None
    assert any("holds 100 bytes" in warning for warning in sink.layout.warnings)
    name = "é" * 60  # 60 characters, 120 bytes
    result = sink.write([TagValue(name, 1.0, T0), TagValue("PLAIN", 2.0, T0)])
    assert [(e.index, e.code) for e in result.rejected] == [(0, "ORA-12899")]
    assert result.written == 1
    # The database refuses the same value for the same reason: the rule is Oracle's, not ours.
    with connection.cursor() as cursor, pytest.raises(oracledb.DatabaseError) as info:
        cursor.execute(
            f'INSERT INTO "{table}" ("TAG_NAME", "TIMESTAMP", "QUALITY") VALUES (:1, SYSTIMESTAMP, \'GOOD\')',
            [name],
        )
    assert info.value.args[0].full_code == "ORA-12899"


def test_text_over_4000_bytes_is_refused_before_the_database_would(
    connection: Any, scratch: Callable[..., str], make_sink: Callable[..., OracleSink]
) -> None:
    table = scratch()
    sink = make_sink(table)
    text = "é" * 2500  # fits VARCHAR2(4000 CHAR) by count, not in 4 000 bytes (MAX_STRING_SIZE=STANDARD)
    result = sink.write([TagValue("LONG", text, T0), TagValue("FITS", "é" * 2000, T0)])
    assert [(e.index, e.code) for e in result.rejected] == [(0, "ORA-12899")]
    assert sorted(fetch(connection, table)) == ["FITS"]
    with connection.cursor() as cursor, pytest.raises(oracledb.DatabaseError) as info:
        cursor.execute(
            f'INSERT INTO "{table}" ("TAG_NAME", "TAG_VALUE_TEXT", "TIMESTAMP", "QUALITY") '
            "VALUES ('LONG', :1, SYSTIMESTAMP, 'GOOD')",
            [text],
        )
    assert info.value.args[0].full_code in {"ORA-12899", "ORA-01461"}
    connection.rollback()


# ---------------------------------------------------------------------- the batch-error cap


def test_the_driver_caps_batch_errors_and_the_sink_stays_under_the_cap(
    connection: Any, scratch: Callable[..., str], make_sink: Callable[..., OracleSink]
) -> None:
    table = scratch()
    sink = make_sink(table, call_timeout_s=120)
    batch = [
        TagValue(f"CAP.{i % 1000:04d}", float(i), T0 + timedelta(seconds=i // 1000))
        for i in range(MAX_BATCH_ERRORS + 1)
    ]
    assert sink.write(batch).written == len(batch)
    # Written again, every row is a batch error: one more than a single executemany can report.
    result = sink.write(batch)
    assert (result.written, result.duplicates) == (0, len(batch))
    rows = [(v.tag_name, v.value, None, v.timestamp.replace(tzinfo=None), "GOOD") for v in batch]
    with connection.cursor() as cursor, pytest.raises(oracledb.Error) as info:
        cursor.setinputsizes(100, oracledb.DB_TYPE_NUMBER, 4000, oracledb.DB_TYPE_TIMESTAMP, 20)
        cursor.executemany(
            f'INSERT INTO "{table}" ("TAG_NAME", "TAG_VALUE", "TAG_VALUE_TEXT", "TIMESTAMP", "QUALITY") '
            "VALUES (:1, :2, :3, :4, :5)",
            rows,
            batcherrors=True,
        )
    assert info.value.args[0].full_code == "DPY-4029"
    connection.rollback()


# ---------------------------------------------------------------------- refused credentials


class CountingDriver:
    """python-oracledb, counting the logins the sink asks for (pools count their first one)."""

    def __init__(self) -> None:
        self.oracledb = oracledb
        self.logins = 0

    def connect(self, **kwargs: Any) -> Any:
        self.logins += 1
        return self.oracledb.connect(**kwargs)

    def create_pool(self, **kwargs: Any) -> Any:
        self.logins += 1
        return self.oracledb.create_pool(**kwargs)


def test_a_wrong_password_costs_one_login_per_backoff_step(scratch: Callable[..., str]) -> None:
    """One refused login on the live account (a later good login resets its count)."""
    now = [0.0]
    driver = CountingDriver()
    sink = OracleSink(dsn=DSN, user=USER, password=PASSWORD + "-wrong", table=scratch(), driver=driver)
    guard = LoginGuard(
        sink, secret=lambda: PASSWORD + "-wrong", backoff=LoginBackoff(60, 600, 3), clock=lambda: now[0]
    )
    try:
        for _ in range(12):  # a probe every 5 s for a minute
            with pytest.raises(PermanentSinkError) as info:
                guard.ping()
            assert info.value.credentials and info.value.code == "ORA-01017"
            now[0] += 5
    finally:
        guard.close()
    assert driver.logins == 1
    assert "credentials refused" in str(info.value)


# ---------------------------------------------------------------------- row locks


def test_a_writer_waits_on_another_sessions_uncommitted_key(
    connection: Any, scratch: Callable[..., str], make_sink: Callable[..., OracleSink]
) -> None:
    table = scratch()
    holder = make_sink(table)
    holder.write([TagValue("WARMUP", 0.0, T0)])  # the layout is read before the lock is taken
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" ("TAG_NAME", "TAG_VALUE", "TIMESTAMP", "QUALITY") '
            "VALUES ('LOCKED', 1, :1, 'GOOD')",
            [T0.replace(tzinfo=None)],
        )
    # Uncommitted: a sink with a short call timeout waits, then gives up (transient, retried later).
    impatient = make_sink(table, call_timeout_s=2)
    with pytest.raises(TransientSinkError):
        impatient.write([TagValue("LOCKED", 2.0, T0)])
    # A patient one waits until the other session commits, and finds the row a duplicate.
    patient = make_sink(table, call_timeout_s=30)
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(patient.write([TagValue("LOCKED", 3.0, T0)])))
    thread.start()
    thread.join(1.0)
    assert thread.is_alive()  # still waiting on the row lock
    connection.commit()
    thread.join(30)
    (result,) = outcome
    assert (result.written, result.duplicates) == (0, 1)
    assert fetch(connection, table)["LOCKED"][0] == "1"


# ---------------------------------------------------------------------- the span's names


def test_the_span_names_the_database_by_its_unique_name(scratch: Callable[..., str]) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = OracleSink(dsn=DSN, user=USER, password=PASSWORD, table=scratch(), tracer=provider.get_tracer("t"))
    try:
        sink.write([TagValue("A", 1.0, T0), TagValue("B", 2.0, T0)])
    finally:
        sink.close()
    (span,) = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["db.namespace"]  # DB_UNIQUE_NAME, read with the schema check
    assert attrs["db.operation.batch.size"] == 2
