"""Every sink's CLIENT span around its insert, per the OpenTelemetry database conventions.

The Oracle sink's span has tests of its own (tests/test_oracle_tracing.py); here the SQLite and
PostgreSQL sinks, and the service that hangs them beneath the writer's span.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from collector.config import Config
from collector.model import PollingData, TagValue
from collector.service import CollectorService
from collector.sinks.base import SinkError, TransientSinkError
from collector.sinks.postgresql import PostgresSink, span_attributes
from collector.sinks.spans import insert_span
from collector.sinks.sqlite import SqliteSink
from collector.telemetry import Telemetry
from collector.telemetry.tracing import Tracing
from tests import pg
from tests.telemetry_support import memory_tracer
from tests.waiting import wait_until

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


def values(count: int, prefix: str = "T") -> list[TagValue]:
    return [TagValue(f"{prefix}{i:04d}", float(i), T0 + timedelta(microseconds=i)) for i in range(count)]


def client_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.kind is SpanKind.CLIENT]


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider, exporter = memory_tracer()
    yield provider, exporter
    provider.shutdown()


# ---------------------------------------------------------------------- SQLite


def test_a_sqlite_batch_is_one_client_span(
    tmp_path: Path, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    sink = SqliteSink(tmp_path / "t.db", tracer=provider.get_tracer("t"))
    try:
        first = sink.write(values(3))
        again = sink.write([*values(3)[:1], TagValue("", 1.0, T0)])  # a duplicate, an empty name
    finally:
        sink.close()
    assert first.written == 3 and again.duplicates == 1 and len(again.rejected) == 1
    batch, second = client_spans(exporter)
    attrs = dict(batch.attributes or {})
    assert batch.name == "BATCH INSERT TAG_DATA"
    assert attrs["db.system.name"] == "sqlite"
    assert attrs["db.operation.name"] == "BATCH INSERT"
    assert attrs["db.collection.name"] == "TAG_DATA"
    assert attrs["db.operation.batch.size"] == 3  # executemany: three parameter sets
    assert (attrs["collector.rows.written"], attrs["collector.rows.duplicate"]) == (3, 0)
    assert batch.status.status_code is StatusCode.UNSET
    attrs = dict(second.attributes or {})
    assert (attrs["collector.rows.duplicate"], attrs["collector.rows.rejected"]) == (1, 1)
    assert tuple(attrs["collector.rows.error_codes"]) == ("SQLITE_CONSTRAINT_CHECK",)  # type: ignore[arg-type]
    flat = " ".join(str(v) for span in (batch, second) for v in (span.attributes or {}).values())
    assert "T0000" not in flat  # no tag name, no value ever reaches a span


def test_a_single_sqlite_row_is_an_insert(
    tmp_path: Path, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    sink = SqliteSink(tmp_path / "t.db", tracer=provider.get_tracer("t"))
    try:
        sink.write(values(1))
    finally:
        sink.close()
    (span,) = client_spans(exporter)
    assert span.name == "INSERT TAG_DATA"
    assert "db.operation.batch.size" not in dict(span.attributes or {})


def test_a_locked_sqlite_file_is_an_error_span_with_sqlites_own_code(
    tmp_path: Path, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    path = tmp_path / "t.db"
    sink = SqliteSink(path, tracer=provider.get_tracer("t"), busy_timeout_s=0.05)
    sink.ping()  # creates the table
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with pytest.raises(TransientSinkError):
            sink.write(values(2))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        sink.close()
    (span,) = client_spans(exporter)
    attrs = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert attrs["db.response.status_code"] == "SQLITE_BUSY"
    assert attrs["error.type"] == "SQLITE_BUSY"
    assert attrs["collector.error.disposition"] == "transient"


# ---------------------------------------------------------------------- the shared helper


def test_the_collectors_own_codes_are_an_error_type_not_a_database_status_code(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    tracer = provider.get_tracer("t")
    with (
        pytest.raises(SinkError),
        insert_span(tracer, system="postgresql", table="tag_data", parameter_sets=1),
    ):
        raise TransientSinkError("no answer within 11 s; connection abandoned", code="CALL_TIMEOUT")
    with (
        pytest.raises(KeyError),
        insert_span(tracer, system="postgresql", table="tag_data", parameter_sets=1),
    ):
        raise KeyError("a bug, not the database")
    timeout, bug = client_spans(exporter)
    assert dict(timeout.attributes or {})["error.type"] == "CALL_TIMEOUT"
    assert "db.response.status_code" not in dict(timeout.attributes or {})
    assert timeout.status.status_code is StatusCode.ERROR
    assert dict(bug.attributes or {})["error.type"] == "KeyError"
    assert bug.status.status_code is StatusCode.ERROR


def test_postgresql_span_attributes_follow_its_conventions() -> None:
    assert span_attributes("host=db.plant port=5432 dbname=history user=c", "TAG_DATA") == {
        "server.address": "db.plant",
        "db.namespace": "history",
    }
    assert span_attributes("postgresql://c@db.plant:6432/history", "plant.TAG_DATA") == {
        "server.address": "db.plant",
        "server.port": 6432,  # not the default: stated
        "db.namespace": "history|plant",  # {database}|{schema}
    }


# ---------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_a_postgresql_insert_is_one_client_span(
    pg_table: str, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    sink = PostgresSink(pg.PG_DSN, table=pg_table, pool_size=1, tracer=provider.get_tracer("t"))
    try:
        sink.write(values(4))
        sink.write([*values(4)[:2], TagValue("", 1.0, T0)])  # two duplicates and a bad row
    finally:
        sink.close()
    first, second = client_spans(exporter)
    attrs = dict(first.attributes or {})
    # One statement takes the whole batch as operands (unnest): an INSERT, not a batch operation.
    assert first.name == f"INSERT {pg_table}"
    assert attrs["db.system.name"] == "postgresql"
    assert attrs["db.operation.name"] == "INSERT"
    assert "db.operation.batch.size" not in attrs
    assert attrs["db.collection.name"] == pg_table
    assert attrs["db.namespace"] == pg.PG_DBNAME
    assert attrs["server.address"] == pg.PG_HOST
    assert "server.port" not in attrs  # the default port
    assert attrs["collector.rows.written"] == 4
    attrs = dict(second.attributes or {})
    assert (attrs["collector.rows.duplicate"], attrs["collector.rows.rejected"]) == (2, 1)
    assert tuple(attrs["collector.rows.error_codes"]) == ("23514",)  # type: ignore[arg-type]


@pytest.mark.postgres
def test_a_postgresql_failure_carries_the_sqlstate(
    pg_conn: psycopg.Connection[tuple[object, ...]],
    pg_table: str,
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = tracing
    sink = PostgresSink(pg.PG_DSN, table=pg_table, pool_size=1, tracer=provider.get_tracer("t"))
    try:
        sink.write(values(2))
        pg.drop_table(pg_conn, pg_table)
        with pytest.raises(SinkError):
            sink.write(values(2, prefix="U"))
    finally:
        sink.close()
    _, failed = client_spans(exporter)
    attrs = dict(failed.attributes or {})
    assert failed.status.status_code is StatusCode.ERROR
    assert attrs["db.response.status_code"] == "42P01"  # undefined_table, the server's own code
    assert attrs["error.type"] == "42P01"
    assert attrs["collector.error.disposition"] == "permanent"


# ---------------------------------------------------------------------- in the service


def test_the_services_sink_span_is_a_child_of_the_writers(
    tmp_path: Path, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    config = Config.model_validate(
        {
            "source": {"type": "external"},
            "sink": {"type": "sqlite", "path": str(tmp_path / "t.db")},
            "writer": {"flush_interval_s": 0.02, "workers": 1},
            "backup": {"dir": str(tmp_path / "backup")},
            "api": {"enabled": False},
        }
    )
    telemetry = Telemetry(tracing=Tracing(provider.get_tracer("t"), provider), process_metrics=False)
    service = CollectorService(config, telemetry=telemetry)
    service.start()
    try:
        service.data_queue.put(PollingData("G", T0, {"A": 1.0, "B": 2.0}))
        wait_until(lambda: client_spans(exporter), what="the sink's span")
    finally:
        service.stop()
    (client,) = client_spans(exporter)
    (attempt,) = [s for s in exporter.get_finished_spans() if s.name == "collector.batch.write"]
    assert client.parent is not None and client.parent.span_id == attempt.context.span_id
    assert client.context.trace_id == attempt.context.trace_id
