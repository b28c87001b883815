"""The span around each executemany: database semantic conventions, attempt, outcomes, no values."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from collector.model import TagValue
from collector.retry import RetryPolicy
from collector.sinks.base import WRITE_ATTEMPT, SinkError, TransientSinkError, WriteResult
from collector.sinks.oracle import OracleSink, ddl
from tests.fakes import WrappedSink
from tests.oracle_double import FakeOracle, driver_error
from tests.writer_rig import WriterRig

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
SECRET_TEXT = "operator-note-7f3a"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def db() -> FakeOracle:
    fake = FakeOracle()
    fake.execute_ddl(ddl())
    return fake


@pytest.fixture
def sink(db: FakeOracle, exporter: InMemorySpanExporter) -> Iterator[OracleSink]:
    provider = TracerProvider()  # never the global one: each test reads its own spans
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    made = OracleSink(
        dsn="db.plant:1521/FREEPDB1",
        user="app",
        password="app-secret",
        driver=db,
        tracer=provider.get_tracer("test"),
        call_timeout_s=1,
    )
    yield made
    made.close()
    provider.shutdown()


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def test_a_batch_span_follows_the_database_conventions(
    sink: OracleSink, exporter: InMemorySpanExporter
) -> None:
    batch = [
        TagValue("LINE1.FIC0001.PV", 1.5, T0),
        TagValue("LINE1.FIC0001.PV", 1.5, T0),  # duplicate
        TagValue("LINE1.MODE", SECRET_TEXT, T0),
    ]
    token = WRITE_ATTEMPT.set(2)
    try:
        result = sink.write(batch)
    finally:
        WRITE_ATTEMPT.reset(token)
    span = only_span(exporter)
    assert span.name == "BATCH INSERT TAG_DATA"
    assert span.kind is SpanKind.CLIENT
    attrs = dict(span.attributes or {})
    assert attrs["db.system.name"] == "oracle.db"
    assert attrs["db.operation.name"] == "BATCH INSERT"
    assert attrs["db.collection.name"] == "TAG_DATA"
    assert attrs["db.operation.batch.size"] == 3
    assert attrs["server.address"] == "db.plant"
    assert attrs["server.port"] == 1521
    # The Oracle conventions: db.namespace is DB_UNIQUE_NAME, read from the database with the
    # schema check (not per batch); the service and the PDB have attributes of their own.
    assert attrs["db.namespace"] == "FREE"
    assert attrs["oracle.db.name"] == "FREE"
    assert attrs["oracle.db.instance.name"] == "FREE"
    assert attrs["oracle.db.pdb"] == "FREEPDB1"
    assert attrs["oracle.db.service"] == "FREEPDB1"
    assert attrs["collector.write.attempt"] == 2
    assert (
        (attrs["collector.rows.written"], attrs["collector.rows.duplicate"])
        == (
            result.written,
            result.duplicates,
        )
        == (2, 1)
    )
    assert attrs["collector.rows.rejected"] == 0
    assert span.status.status_code is StatusCode.UNSET
    # No bind value, and no tag name, ever reaches the span.
    flat = " ".join(str(v) for v in attrs.values())
    assert SECRET_TEXT not in flat
    assert "LINE1" not in flat


def test_a_failed_call_sets_the_status_code_and_error_type(
    sink: OracleSink, db: FakeOracle, exporter: InMemorySpanExporter
) -> None:
    sink.ping()
    db.kill_sessions()
    sink.write([TagValue("A", 1.0, T0)])  # the dead session fails, a fresh one succeeds
    failed, succeeded = exporter.get_finished_spans()
    attrs = dict(failed.attributes or {})
    assert attrs["db.response.status_code"] == "ORA-00028"
    assert attrs["error.type"] == "ORA-00028"
    assert attrs["collector.error.disposition"] == "transient"
    assert failed.status.status_code is StatusCode.ERROR
    assert "killed" in (failed.status.description or "")
    assert succeeded.status.status_code is StatusCode.UNSET
    assert "error.type" not in dict(succeeded.attributes or {})


def test_a_permanent_failure_is_marked_as_such(
    sink: OracleSink, db: FakeOracle, exporter: InMemorySpanExporter
) -> None:
    sink.ping()
    db.execute_ddl('DROP TABLE "TAG_DATA"')
    with pytest.raises(SinkError):
        sink.write([TagValue("A", 1.0, T0)])
    attrs = dict(only_span(exporter).attributes or {})
    assert (attrs["db.response.status_code"], attrs["collector.error.disposition"]) == (
        "ORA-00942",
        "permanent",
    )


def test_rejected_rows_are_counted_with_their_codes(
    sink: OracleSink, db: FakeOracle, exporter: InMemorySpanExporter
) -> None:
    db.fail_rows(lambda row: row["TAG_NAME"] == "B", 12899, "value too large for column")
    sink.write([TagValue("A", 1.0, T0), TagValue("B", 2.0, T0)])
    attrs = dict(only_span(exporter).attributes or {})
    assert attrs["collector.rows.rejected"] == 1
    assert tuple(attrs["collector.rows.error_codes"]) == ("ORA-12899",)  # type: ignore[arg-type]


class _FailingFirst(WrappedSink):
    """Wraps the Oracle sink so that the writer's first attempt fails before reaching it."""

    def __init__(self, inner: OracleSink) -> None:
        super().__init__(inner)
        self.calls = 0
        self.done = threading.Event()

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        self.calls += 1
        if self.calls == 1:
            raise TransientSinkError("network blip", code="DPY-4011")
        result = self.inner.write(batch)
        self.done.set()
        return result


def test_the_span_carries_the_writers_attempt_number(
    sink: OracleSink, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    wrapped = _FailingFirst(sink)
    rig = WriterRig(
        tmp_path, wrapped, batch_size=2, flush_interval_s=0.01, retry=RetryPolicy.of(3, [0.01]), workers=1
    )
    rig.buffer.put_many([TagValue("A", 1.0, T0), TagValue("B", 2.0, T0)])
    rig.start()
    try:
        assert wrapped.done.wait(10)
    finally:
        rig.stop()
    span = only_span(exporter)
    assert dict(span.attributes or {})["collector.write.attempt"] == 2


def test_a_single_row_is_an_insert_not_a_batch_of_one(
    sink: OracleSink, exporter: InMemorySpanExporter
) -> None:
    sink.write([TagValue("A", 1.0, T0)])
    span = only_span(exporter)
    attrs = dict(span.attributes or {})
    assert span.name == "INSERT TAG_DATA"
    assert attrs["db.operation.name"] == "INSERT"
    assert "db.operation.batch.size" not in attrs  # the conventions: never a batch size of 1


def test_a_driver_only_error_is_an_error_type_not_a_database_status_code(
    sink: OracleSink, db: FakeOracle, exporter: InMemorySpanExporter
) -> None:
    sink.ping()
    db.inject("executemany", lambda: driver_error(4024, timeout=500))  # a call timeout (DPY-4024)
    with pytest.raises(TransientSinkError):
        sink.write([TagValue("A", 1.0, T0), TagValue("B", 1.0, T0)])
    span = exporter.get_finished_spans()[0]
    attrs = dict(span.attributes or {})
    assert attrs["error.type"] == "DPY-4024"
    assert "db.response.status_code" not in attrs  # not an Oracle error number
    assert span.status.status_code is StatusCode.ERROR


def test_an_exception_that_is_not_the_drivers_still_marks_the_span_failed(
    sink: OracleSink, db: FakeOracle, exporter: InMemorySpanExporter
) -> None:
    sink.ping()
    db.inject("executemany", lambda: OSError("socket went away"))
    with pytest.raises(OSError):
        sink.write([TagValue("A", 1.0, T0), TagValue("B", 1.0, T0)])
    span = only_span(exporter)
    attrs = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert attrs["error.type"] == "OSError"
    assert "db.response.status_code" not in attrs
