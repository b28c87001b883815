"""The CLIENT span every sink puts around the database call that writes a batch.

It follows the OpenTelemetry database semantic conventions
(https://opentelemetry.io/docs/specs/semconv/db/database-spans/ and the pages for PostgreSQL and
Oracle): ``db.system.name``, ``db.collection.name``, ``db.operation.name`` (``BATCH INSERT`` for
a batch of two or more parameter sets, ``INSERT`` for one statement), ``db.operation.batch.size``
only for a real batch (never 1), ``db.response.status_code`` only for a code the database (or its
driver) reported, and ``error.type`` on every failure: that code, one of the collector's own
(``CALL_TIMEOUT``), or the exception's class for anything unexpected. The status is ERROR on any
failure. No bind value and no tag name ever reaches a span.

The writer's own span (``collector.batch``, INTERNAL) is the parent: the attempt number, the
outcome and where the batch went are recorded there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from collector.sinks.base import WRITE_ATTEMPT, SinkError, WriteResult

BATCH_INSERT = "BATCH INSERT"
INSERT = "INSERT"


@dataclass(frozen=True, slots=True)
class SpanFailure:
    """How a failure is recorded on the span."""

    error_type: str
    status_code: str | None
    """``db.response.status_code``: the database's own code, or None."""
    message: str
    disposition: str | None = None
    """``collector.error.disposition``: transient, permanent, ... (what the collector does next)."""


def sink_error_failure(exc: BaseException) -> SpanFailure | None:
    """A :class:`SinkError` as the span records it; None for any other exception."""
    if not isinstance(exc, SinkError):
        return None
    return SpanFailure(
        error_type=exc.code or type(exc).__qualname__,
        status_code=exc.database_code,
        message=str(exc),
        disposition=exc.kind.value,
    )


def operation_name(parameter_sets: int) -> str:
    """``BATCH INSERT`` for a call that carries several parameter sets (an executemany), else
    ``INSERT``: the conventions model a one-row batch, and one statement that takes many rows as
    operands (PostgreSQL's unnest), as a single operation."""
    return BATCH_INSERT if parameter_sets > 1 else INSERT


@contextmanager
def insert_span(
    tracer: trace.Tracer,
    *,
    system: str,
    table: str,
    parameter_sets: int,
    attributes: Mapping[str, AttributeValue] | None = None,
    failure_of: Callable[[BaseException], SpanFailure | None] = sink_error_failure,
) -> Iterator[trace.Span]:
    """Run the body inside the CLIENT span for one insert call; a failure raised through it is
    recorded (``failure_of`` reads the database's own exceptions) and re-raised."""
    operation = operation_name(parameter_sets)
    attrs: dict[str, AttributeValue] = {
        "db.system.name": system,
        "db.operation.name": operation,
        "db.collection.name": table,
        **(attributes or {}),
    }
    if parameter_sets > 1:
        attrs["db.operation.batch.size"] = parameter_sets
    attrs["collector.write.attempt"] = WRITE_ATTEMPT.get()
    with tracer.start_as_current_span(
        f"{operation} {table}",
        kind=SpanKind.CLIENT,
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            failure = failure_of(exc)
            if failure is None:
                # Not the database's error at all (a bug, a socket error escaping the driver): the
                # call still failed, so the span says so, with the exception's class.
                failure = SpanFailure(type(exc).__qualname__, None, f"{type(exc).__name__}: {exc}")
            mark_failed(span, failure)
            raise


def mark_failed(span: trace.Span, failure: SpanFailure) -> None:
    span.set_attribute("error.type", failure.error_type)
    if failure.status_code:
        span.set_attribute("db.response.status_code", failure.status_code)
    if failure.disposition:
        span.set_attribute("collector.error.disposition", failure.disposition)
    span.set_status(Status(StatusCode.ERROR, failure.message))


def record_result(span: trace.Span, result: WriteResult) -> None:
    """What happened to the rows: written, duplicate, rejected (with the codes, never the values)."""
    span.set_attribute("collector.rows.written", result.written)
    span.set_attribute("collector.rows.duplicate", result.duplicates)
    span.set_attribute("collector.rows.rejected", len(result.rejected))
    if result.rejected:
        span.set_attribute("collector.rows.error_codes", sorted({e.code for e in result.rejected}))
