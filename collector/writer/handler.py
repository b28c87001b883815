"""What happens to one batch: an attempt in its span, then the decision that follows.

After each attempt (:func:`collector.write_attempt.write_once`, the rules shared with replay) a
batch is settled (written, duplicate, refused rows to the rejected CSV), queued for a retry (a
transient error with retries left), or saved to the backup CSV (a permanent error, retries
exhausted, shutting down). Exhausted retries and permanent errors open the circuit; the probe that
runs while it is open closes it. Every attempt runs in an OpenTelemetry span
(``collector.batch.write``, with the database attributes); a retry joins the first attempt's trace,
and the backup write that follows the last failure is a child of that attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from opentelemetry import trace

from collector.circuit import CircuitBreaker, CircuitState
from collector.logs import RateLimiter, log_event
from collector.model import TagValue
from collector.retry import RetryPolicy
from collector.sinks.base import Sink, SinkError, WriteResult
from collector.write_attempt import write_once
from collector.writer.events import AttemptOutcome, BatchAttempt, WriterListener, origin
from collector.writer.ledger import Ledger
from collector.writer.retry_queue import PendingRetry, RetryQueue
from collector.writer.spooler import Spooler

log = logging.getLogger("collector.writer")

BATCH_SPAN = "collector.batch.write"
"""The span of one write attempt; retries are its children, the backup write a grandchild."""


class Shutdown:
    """Whether the writer is stopping, and the deadline for draining; thread-safe."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._stopping = False
        self._deadline: float | None = None

    def begin(self, timeout_s: float) -> bool:
        """Start stopping with ``timeout_s`` to drain; False if stopping had already begun."""
        with self._lock:
            if self._stopping:
                return False
            self._stopping = True
            self._deadline = self._clock() + timeout_s
            return True

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def deadline(self) -> float | None:
        return self._deadline

    def past_deadline(self) -> bool:
        deadline = self._deadline
        return deadline is not None and self._clock() >= deadline


class BatchHandler:
    """Attempts batches and decides what happens to each; also runs the circuit's probe."""

    def __init__(
        self,
        sink: Sink,
        spooler: Spooler,
        ledger: Ledger,
        retries: RetryQueue,
        circuit: CircuitBreaker,
        *,
        shutdown: Shutdown,
        retry: RetryPolicy,
        listener: WriterListener,
        tracer: trace.Tracer,
        clock: Callable[[], float] = time.monotonic,
        on_settled: Callable[[Sequence[TagValue]], None] = lambda _batch: None,
    ) -> None:
        self._sink = sink
        self._on_settled = on_settled
        self._spooler = spooler
        self._ledger = ledger
        self._retries = retries
        self._circuit = circuit
        self._shutdown = shutdown
        self._retry = retry
        self._listener = listener
        self._tracer = tracer
        self._clock = clock
        self._probe_log = RateLimiter(60.0, clock)

    # ------------------------------------------------------------------ the three kinds of work

    def fresh(self, batch: list[TagValue], batch_id: int) -> None:
        """A batch just taken from the buffer (``batch_id`` names it in every log line)."""
        if self._shutdown.past_deadline():
            self._spooler.save(batch, "shutdown deadline", batch_id=batch_id)
            return
        status = self._circuit.status()
        if status.state is CircuitState.OPEN:
            self._spooler.save(batch, f"circuit open: {status.reason}", batch_id=batch_id)
            return
        self._attempt(batch, 1, batch_id)

    def retry(self, item: PendingRetry) -> None:
        """A failed batch whose retry is due."""
        if self._shutdown.stopping:
            self._spooler.save(item.batch, f"shutdown during retry: {item.error}", batch_id=item.batch_id)
            return
        status = self._circuit.status()
        if status.state is CircuitState.OPEN:
            self._spooler.save(item.batch, f"circuit open: {status.reason}", batch_id=item.batch_id)
            return
        self._ledger.retried()
        log_event(
            log,
            logging.WARNING,
            "write_retry",
            f"batch {item.batch_id}: retry {item.attempts} of {self._retry.max_retries}"
            f" (attempt {item.attempts + 1})",
            attempt=item.attempts + 1,
            size=len(item.batch),
            previous_error=item.error,
            **origin(item.batch_id),
        )
        self._attempt(item.batch, item.attempts + 1, item.batch_id, item.trace_parent)

    def probe(self) -> None:
        """Check the database while the circuit is open; close the circuit when it answers."""
        healthy, reason, permanent = True, "", False
        try:
            self._sink.ping()
        except SinkError as exc:
            healthy, reason, permanent = False, exc.describe(), not exc.transient
        except Exception as exc:
            healthy, reason = False, f"{type(exc).__name__}: {exc}"
        opened_at = self._circuit.status().opened_at
        closed = self._circuit.probe_done(healthy, reason, permanent=permanent)
        if closed:
            log_event(
                log,
                logging.WARNING,
                "circuit_closed",
                "database is back; writing resumes",
                opened_at=(
                    datetime.fromtimestamp(opened_at, UTC).isoformat(timespec="milliseconds")
                    if opened_at is not None
                    else None
                ),
            )
            self._spooler.rotate_backup()  # the outage's backup file is complete and can be replayed
            self._listener.circuit_changed(self._circuit.status())
        elif not healthy and self._probe_log.ready():
            log_event(log, logging.WARNING, "probe_failed", "database still unavailable", error=reason)

    def save_retries(self, reason: str) -> None:
        """Everything waiting for a retry goes to backup now."""
        for item in self._retries.drain():
            self._spooler.save(item.batch, reason, batch_id=item.batch_id)

    # ------------------------------------------------------------------ one attempt

    def _attempt(
        self,
        batch: list[TagValue],
        attempt: int,
        batch_id: int,
        trace_parent: trace.SpanContext | None = None,
    ) -> None:
        # One span per attempt, with the OpenTelemetry database attributes. It is the writer's view
        # (attempt, outcome, where the batch went); a sink that traces its driver calls adds its
        # own CLIENT span ("BATCH INSERT <table>") beneath it, so the names never repeat. It is
        # current while the listener runs, so metrics can attach its trace id as an exemplar.
        parent = None
        if trace_parent is not None and trace_parent.is_valid:
            parent = trace.set_span_in_context(trace.NonRecordingSpan(trace_parent))
        attributes: dict[str, str | int] = {
            "db.system.name": self._sink.system_name,
            "db.operation.name": "BATCH INSERT",
            "db.collection.name": self._sink.table,
            "collector.batch.attempt": attempt,
            "collector.batch.size": len(batch),
            "collector.batch.id": batch_id,
        }
        if len(batch) > 1:  # the conventions reserve batch.size for real batches
            attributes["db.operation.batch.size"] = len(batch)
        with self._tracer.start_as_current_span(
            BATCH_SPAN,
            context=parent,
            kind=trace.SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
        ) as span:
            outcome = self._attempt_in_span(batch, attempt, batch_id, span, trace_parent)
            span.set_attribute("collector.batch.outcome", outcome.value)

    def _attempt_in_span(
        self,
        batch: list[TagValue],
        attempt: int,
        batch_id: int,
        span: trace.Span,
        trace_parent: trace.SpanContext | None,
    ) -> AttemptOutcome:
        done = write_once(self._sink, batch, attempt=attempt, clock=self._clock)
        if span.is_recording():
            _describe_attempt(span, done.result, done.error)
        self._listener.batch_attempted(BatchAttempt(batch, attempt, done.duration_s, done.result, done.error))
        if done.result is not None:
            self._settle(batch, done.result, batch_id)
            return AttemptOutcome.WRITTEN
        assert done.error is not None
        return self._failed(batch, attempt, batch_id, done.error, trace_parent or span.get_span_context())

    def _settle(self, batch: list[TagValue], result: WriteResult, batch_id: int) -> None:
        resumed = self._ledger.committed(result)
        if resumed is not None:
            # The end of the outage, said once, whether or not the circuit opened meanwhile.
            since = datetime.fromtimestamp(resumed.failing_since, UTC).isoformat(timespec="milliseconds")
            log_event(
                log,
                logging.WARNING,
                "writes_resumed",
                f"writing to the database again after {resumed.down_s:.1f} s of failures",
                down_s=round(resumed.down_s, 3),
                failed_attempts=resumed.failed_attempts,
                failing_since=since,
                **origin(batch_id),
            )
        refused = [(batch[e.index], e.code, e.message) for e in result.rejected]
        self._spooler.save_refused(refused, batch_id=batch_id)
        if result.duplicates:
            log_event(
                log,
                logging.INFO,
                "duplicates_skipped",
                duplicates=result.duplicates,
                size=len(batch),
                **origin(batch_id),
            )
        # Last: every value is now committed, a counted duplicate, or in the (fsynced) rejected file.
        self._on_settled(batch)

    def _failed(
        self,
        batch: list[TagValue],
        attempt: int,
        batch_id: int,
        error: SinkError,
        trace_parent: trace.SpanContext,
    ) -> AttemptOutcome:
        description = error.describe()
        self._ledger.attempt_failed(description)
        stopping = self._shutdown.stopping
        log_event(
            log,
            logging.WARNING if error.transient else logging.ERROR,
            "write_failed",
            f"batch {batch_id}: attempt {attempt} failed",
            attempt=attempt,
            size=len(batch),
            kind=error.kind.value,
            error=description,
            **origin(batch_id),
        )
        if not error.transient:
            self._open_circuit(f"permanent error: {description}", permanent=True)
            return self._spooler.save(batch, description, batch_id=batch_id)
        delay = None if stopping else self._retry.delay_after(attempt)
        if delay is None:
            if not stopping:
                self._open_circuit(f"retries exhausted: {description}", permanent=False)
            return self._spooler.save(batch, description, batch_id=batch_id)
        self._retries.push(
            self._clock() + delay,
            batch_id,
            batch,
            attempts=attempt,
            error=description,
            trace_parent=trace_parent,
        )
        return AttemptOutcome.RETRY

    def _open_circuit(self, reason: str, *, permanent: bool) -> None:
        if self._circuit.trip(reason, permanent=permanent):
            log_event(
                log,
                logging.ERROR,
                "circuit_opened",
                "database marked down; batches go to backup until a probe succeeds",
                reason=reason,
                permanent=permanent,
                probe_interval_s=self._circuit.probe_interval_s,
            )
            self._listener.circuit_changed(self._circuit.status())
        # Nothing waiting for a retry will succeed now; save it rather than hold it in memory.
        self.save_retries(f"circuit open: {reason}")


def _describe_attempt(span: trace.Span, result: WriteResult | None, error: SinkError | None) -> None:
    if result is not None:
        span.set_attribute("collector.rows.written", result.written)
        span.set_attribute("collector.rows.duplicate", result.duplicates)
        span.set_attribute("collector.rows.rejected", len(result.rejected))
        return
    assert error is not None
    cause = error.__cause__
    # error.type: the database's own code when it has one, else the driver's exception class.
    error_type = error.code or (type(cause).__qualname__ if cause is not None else type(error).__qualname__)
    span.set_attribute("error.type", error_type)
    if error.database_code:  # only the database's own codes; the collector's stay in error.type
        span.set_attribute("db.response.status_code", error.database_code)
    span.set_attribute("collector.error.kind", error.kind.value)
    span.record_exception(error)
    span.set_status(trace.Status(trace.StatusCode.ERROR, error.describe()))
