"""BatchWriter: drains the buffer into a sink in batches, retrying, backing up and never stalling.

Each of ``workers`` threads loops over three kinds of work, most urgent first:

1. a failed batch whose retry is due (FR-010: after 1 s, 2 s, 4 s);
2. a probe of the database while the circuit is open (one at a time, every ``probe_interval_s``);
3. a fresh batch from the buffer, taken when ``batch_size`` values wait or the oldest has waited
   ``flush_interval_s`` (FR-008, FR-009), back to back while a backlog remains.

A failed batch waits in the retry queue while the workers keep draining the buffer, so a retrying
batch never stops intake. When a batch has exhausted its retries, or the error is permanent, the
circuit opens: batches go straight to the backup CSV until a probe finds the database healthy. A
spill guard thread saves the oldest values to backup when the buffer nears capacity, which happens
only when the writers are stuck (a database that hangs) or too slow.

Every value taken from the buffer ends in exactly one of: written, duplicate, rejected, backed up,
lost (no backup directory could take it); until then it is in flight. :meth:`BatchWriter.stats`
reads all of these together with the buffer's counters under one lock, so the accounting identity
holds exactly in every snapshot.

Every attempt runs in an OpenTelemetry span (``collector.batch.write``, with the database
attributes); a retry joins the first attempt's trace, and the backup write that follows the last
failure is a child of that attempt. Only the OpenTelemetry API is used: with no TracerProvider
installed the spans cost next to nothing.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from opentelemetry import trace

from collector.backup import CsvSpool, SpoolError, backup_rows, invalid_rows, rejected_rows
from collector.buffer import TagBuffer
from collector.circuit import CircuitBreaker, CircuitState, CircuitStatus
from collector.logs import RateLimiter, log_event
from collector.model import InvalidValue, TagValue
from collector.retry import RetryPolicy
from collector.sinks.base import WRITE_ATTEMPT, Sink, SinkError, TransientSinkError, WriteResult

log = logging.getLogger("collector.writer")

BATCH_SPAN = "collector.batch.write"
"""The span of one write attempt; retries are its children, the backup write a grandchild."""
BACKUP_SPAN = "collector.backup.write"
REJECTED_SPAN = "collector.rejected.write"


class WriterListener:
    """Per-batch notifications for metrics and traces, called outside every lock. The methods do
    nothing here; a listener overrides the ones it needs."""

    def batch_attempted(
        self,
        batch: Sequence[TagValue],
        attempt: int,
        duration_s: float,
        result: WriteResult | None,
        error: SinkError | None,
    ) -> None:
        """One call to the sink: ``result`` if it answered, ``error`` if it failed."""

    def batch_saved(self, size: int, destination: str, reason: str) -> None:
        """Values went to ``backup`` or ``rejected`` files, or were ``lost``."""

    def circuit_changed(self, status: CircuitStatus) -> None:
        """The circuit opened or closed."""


@dataclass(frozen=True, slots=True)
class WriterStats:
    """One consistent snapshot of the writer and the buffer it drains."""

    # Buffer counters, read under the writer's lock so in_flight is exact.
    buffer_size: int
    buffer_capacity: int
    buffer_inserted: int
    buffer_removed: int
    buffer_overflow: int
    buffer_high_water: int
    # Where every value taken from the buffer went.
    written: int
    duplicate: int
    rejected: int
    backed_up: int
    lost: int
    in_flight: int
    retry_pending: int
    """Values waiting in the retry queue (part of in_flight)."""
    spilled: int
    """Values the spill guard saved to backup (part of backed_up)."""
    # Values refused at intake, which never entered the buffer.
    invalid_rejected: int
    invalid_lost: int
    # Batches.
    batches_written: int
    attempts_failed: int
    batches_backed_up: int
    retries: int
    last_error: str
    last_success_at: float | None
    circuit: CircuitStatus


@dataclass(order=True, slots=True)
class _Retry:
    due: float
    seq: int
    batch: list[TagValue]
    attempts: int
    error: str
    trace_parent: trace.SpanContext | None = field(default=None, compare=False)
    """The first attempt's span: retries join its trace, so one trace shows the batch's story."""


class BatchWriter:
    """Moves values from a :class:`TagBuffer` into a :class:`Sink`; see the module docstring."""

    def __init__(
        self,
        buffer: TagBuffer,
        sink: Sink,
        backup: CsvSpool,
        rejected: CsvSpool,
        *,
        flush_interval_s: float = 0.5,
        retry: RetryPolicy | None = None,
        workers: int = 2,
        probe_interval_s: float = 5.0,
        spill: bool = True,
        listener: WriterListener | None = None,
        tracer: trace.Tracer | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be positive, got {flush_interval_s}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._buffer = buffer
        self._sink = sink
        self._backup = backup
        self._rejected = rejected
        self._flush_interval = flush_interval_s
        self._retry = retry or RetryPolicy()
        self._worker_count = workers
        self._spill = spill
        self._listener: WriterListener = listener or WriterListener()
        # The global tracer is a no-op until someone installs a TracerProvider; the service passes
        # the one it configured from the OTEL_* environment.
        self._tracer = tracer or trace.get_tracer(__name__)
        self._clock = clock
        self._wall_clock = wall_clock
        self.circuit = CircuitBreaker(probe_interval_s, clock=clock, wall_clock=wall_clock)

        self._lock = threading.Lock()
        self._retry_queue: list[_Retry] = []
        self._retry_seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._stopping = False
        self._deadline: float | None = None
        self._probe_log = RateLimiter(60.0, clock)
        self._spill_log = RateLimiter(10.0, clock)

        self._written = 0
        self._duplicate = 0
        self._rejected_rows = 0
        self._backed_up = 0
        self._lost = 0
        self._spilled = 0
        self._invalid_rejected = 0
        self._invalid_lost = 0
        self._batches_written = 0
        self._attempts_failed = 0
        self._batches_backed_up = 0
        self._retries = 0
        self._retry_values = 0
        self._last_error = ""
        self._last_success_at: float | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._started:
            raise RuntimeError("writer already started")
        self._started = True
        for index in range(self._worker_count):
            thread = threading.Thread(target=self._run_worker, name=f"writer-{index + 1}", daemon=True)
            self._threads.append(thread)
        if self._spill:
            self._threads.append(
                threading.Thread(target=self._run_spill_guard, name="writer-spill", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    @property
    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    def stop(self, timeout_s: float = 10.0, *, grace_s: float = 30.0) -> int:
        """Drain and stop. Values still in the buffer or in retry when ``timeout_s`` runs out go to
        backup. Workers blocked in a database call get ``grace_s`` more to return (their batch then
        goes to backup too). Returns the number of values that were pending when stop began. Safe to
        call twice."""
        with self._lock:
            if self._stopping:
                return 0
            self._stopping = True
            self._deadline = self._clock() + timeout_s
        stats = self.stats()
        pending = stats.buffer_size + stats.in_flight
        log_event(
            log,
            logging.INFO,
            "shutdown_started",
            "writer draining pending values",
            pending=pending,
            in_buffer=stats.buffer_size,
            in_flight=stats.in_flight,
            deadline_s=timeout_s,
            circuit=stats.circuit.state.value,
        )
        self._buffer.close()
        self._join(self._deadline)
        # Past the deadline: whatever the workers have not taken goes to backup from here.
        while leftover := self._buffer.take(self._buffer.batch_size):
            self._save(leftover, "shutdown deadline")
        for item in self._drain_retries():
            self._save(item.batch, "shutdown deadline")
        self._join(self._clock() + grace_s)
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        if alive:
            log_event(
                log, logging.ERROR, "writer_threads_stuck", "writer threads did not stop", threads=alive
            )
        return pending

    def _join(self, deadline: float) -> None:
        for thread in self._threads:
            thread.join(max(0.0, deadline - self._clock()))

    def _past_deadline(self) -> bool:
        deadline = self._deadline
        return deadline is not None and self._clock() >= deadline

    # ------------------------------------------------------------------ the worker loop

    def _run_worker(self) -> None:
        while True:
            try:
                work = self._next_work()
            except Exception:  # a worker never dies: log and carry on
                log.exception("writer loop error")
                time.sleep(0.1)
                continue
            if work is None:
                return
            work()

    def _next_work(self) -> Callable[[], None] | None:
        while True:
            now = self._clock()
            with self._lock:
                queue = self._retry_queue
                if queue and (self._stopping or queue[0].due <= now):
                    item = heapq.heappop(queue)
                    self._retry_values -= len(item.batch)
                    return lambda: self._guarded(item.batch, self._handle_retry, item)
                retry_wait = queue[0].due - now if queue else None
                stopping = self._stopping
            if self.circuit.claim_probe():
                return self._probe
            waits = [w for w in (retry_wait, self.circuit.seconds_to_probe()) if w is not None]
            timeout = min(waits) if waits else None
            batch = self._buffer.next_batch(self._flush_interval, timeout)
            if batch:
                return lambda: self._guarded(batch, self._handle_fresh, batch)
            if stopping and self._buffer.closed and not len(self._buffer):
                with self._lock:
                    if not self._retry_queue:
                        return None

    def _guarded(self, batch: list[TagValue], handler: Callable[..., None], arg: object) -> None:
        """Run a handler; if it fails unexpectedly, the batch it held still goes to backup."""
        try:
            handler(arg)
        except Exception as exc:
            log.exception("unexpected error handling a batch of %d values", len(batch))
            self._save(batch, f"internal error: {type(exc).__name__}")

    def _handle_fresh(self, batch: list[TagValue]) -> None:
        if self._past_deadline():
            self._save(batch, "shutdown deadline")
            return
        status = self.circuit.status()
        if status.state is CircuitState.OPEN:
            self._save(batch, f"circuit open: {status.reason}")
            return
        self._attempt(batch, 1)

    def _handle_retry(self, item: _Retry) -> None:
        if self._stopping:
            self._save(item.batch, f"shutdown during retry: {item.error}")
            return
        status = self.circuit.status()
        if status.state is CircuitState.OPEN:
            self._save(item.batch, f"circuit open: {status.reason}")
            return
        with self._lock:
            self._retries += 1
        log_event(
            log,
            logging.WARNING,
            "write_retry",
            f"retry {item.attempts} of {self._retry.max_retries}",
            attempt=item.attempts + 1,
            size=len(item.batch),
            previous_error=item.error,
        )
        self._attempt(item.batch, item.attempts + 1, item.trace_parent)

    def _attempt(
        self, batch: list[TagValue], attempt: int, trace_parent: trace.SpanContext | None = None
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
            outcome = self._attempt_in_span(batch, attempt, span, trace_parent)
            span.set_attribute("collector.batch.outcome", outcome)

    def _attempt_in_span(
        self,
        batch: list[TagValue],
        attempt: int,
        span: trace.Span,
        trace_parent: trace.SpanContext | None,
    ) -> str:
        """Write the batch once; returns where it went: written, retry, backed_up or lost."""
        started = self._clock()
        result: WriteResult | None = None
        error: SinkError | None = None
        token = WRITE_ATTEMPT.set(attempt)
        try:
            result = self._sink.write(batch)
        except SinkError as exc:
            error = exc
        except Exception as exc:
            # An error the sink did not classify: treat it as transient so the retry schedule and
            # then the backup CSV keep the data safe, and keep the traceback for the operator.
            log.exception("sink raised an unclassified error")
            error = TransientSinkError(f"{type(exc).__name__}: {exc}")
            error.__cause__ = exc
        finally:
            WRITE_ATTEMPT.reset(token)
        duration = self._clock() - started
        if result is not None and (result.total != len(batch) or not _indexes_valid(result, len(batch))):
            # A sink must account for every row exactly once. If it does not, nobody knows which
            # rows are stored: retry the whole batch, which the primary key makes idempotent.
            error = TransientSinkError(
                f"sink accounted for {result.total} of {len(batch)} rows", code="SINK_MISCOUNT"
            )
            result = None
        if span.is_recording():
            _describe_attempt(span, result, error)
        self._listener.batch_attempted(batch, attempt, duration, result, error)
        if result is not None:
            self._settle(batch, result)
            return "written"
        assert error is not None
        return self._failed(batch, attempt, error, trace_parent or span.get_span_context())

    def _settle(self, batch: list[TagValue], result: WriteResult) -> None:
        refused = [(batch[e.index], e.code, e.message) for e in result.rejected]
        with self._lock:
            self._written += result.written
            self._duplicate += result.duplicates
            self._batches_written += 1
            self._last_success_at = self._wall_clock()
        if refused:
            self._save_rejected(refused, from_buffer=True)
        if result.duplicates:
            log_event(log, logging.INFO, "duplicates_skipped", duplicates=result.duplicates, size=len(batch))

    def _failed(
        self, batch: list[TagValue], attempt: int, error: SinkError, trace_parent: trace.SpanContext
    ) -> str:
        description = error.describe()
        with self._lock:
            self._attempts_failed += 1
            self._last_error = description
            stopping = self._stopping
        log_event(
            log,
            logging.WARNING if error.transient else logging.ERROR,
            "write_failed",
            "batch write failed",
            attempt=attempt,
            size=len(batch),
            kind=error.kind.value,
            error=description,
        )
        if not error.transient:
            self._open_circuit(f"permanent error: {description}", permanent=True)
            return self._save(batch, description)
        delay = None if stopping else self._retry.delay_after(attempt)
        if delay is None:
            if not stopping:
                self._open_circuit(f"retries exhausted: {description}", permanent=False)
            return self._save(batch, description)
        with self._lock:
            heapq.heappush(
                self._retry_queue,
                _Retry(
                    self._clock() + delay, next(self._retry_seq), batch, attempt, description, trace_parent
                ),
            )
            self._retry_values += len(batch)
        return "retry"

    def _open_circuit(self, reason: str, *, permanent: bool) -> None:
        if self.circuit.trip(reason, permanent=permanent):
            status = self.circuit.status()
            log_event(
                log,
                logging.ERROR,
                "circuit_opened",
                "database marked down; batches go to backup until a probe succeeds",
                reason=reason,
                permanent=permanent,
                probe_interval_s=self.circuit.probe_interval_s,
            )
            self._listener.circuit_changed(status)
        # Nothing waiting for a retry will succeed now; save it rather than hold it in memory.
        for item in self._drain_retries():
            self._save(item.batch, f"circuit open: {reason}")

    def _drain_retries(self) -> list[_Retry]:
        with self._lock:
            items, self._retry_queue = self._retry_queue, []
            self._retry_values = 0
        return items

    def _probe(self) -> None:
        healthy, reason, permanent = True, "", False
        try:
            self._sink.ping()
        except SinkError as exc:
            healthy, reason, permanent = False, exc.describe(), not exc.transient
        except Exception as exc:
            healthy, reason = False, f"{type(exc).__name__}: {exc}"
        closed = self.circuit.probe_done(healthy, reason, permanent=permanent)
        if closed:
            log_event(log, logging.WARNING, "circuit_closed", "database is back; writing resumes")
            self._backup.rotate()  # the outage's backup file is complete and can be replayed
            self._listener.circuit_changed(self.circuit.status())
        elif not healthy and self._probe_log.ready():
            log_event(log, logging.WARNING, "probe_failed", "database still unavailable", error=reason)

    # ------------------------------------------------------------------ spill guard

    def _run_spill_guard(self) -> None:
        while not self._stopping:
            try:
                batch = self._buffer.wait_for_spill(0.5)
                if not batch:
                    continue
                with self._lock:
                    self._spilled += len(batch)
                if self._spill_log.ready():
                    stats = self._buffer.stats()
                    log_event(
                        log,
                        logging.WARNING,
                        "buffer_spill",
                        "buffer nearly full: saving oldest values to backup (writers not keeping up)",
                        size=stats.size,
                        capacity=stats.capacity,
                        spilled_total=self._spilled,
                    )
                self._save(batch, "buffer spill: writers not keeping up")
            except Exception:
                log.exception("spill guard error")

    # ------------------------------------------------------------------ where values end up

    def _save(self, batch: list[TagValue], reason: str) -> str:
        """Put a batch taken from the buffer into the backup CSV (FR-011), or count it lost.
        Returns ``backed_up`` or ``lost``."""
        if not batch:
            return "backed_up"
        with self._tracer.start_as_current_span(
            BACKUP_SPAN,
            attributes={
                "collector.spool.kind": "backup",
                "collector.rows": len(batch),
                "collector.reason": reason,
            },
            record_exception=False,
        ) as span:
            try:
                path = self._backup.append(
                    backup_rows(batch, datetime.fromtimestamp(self._wall_clock(), UTC))
                )
            except SpoolError as exc:
                _spool_failed(span, exc)
                with self._lock:
                    self._lost += len(batch)
                log_event(
                    log,
                    logging.CRITICAL,
                    "values_lost",
                    "backup failed: values lost",
                    count=len(batch),
                    error=str(exc),
                )
                self._listener.batch_saved(len(batch), "lost", reason)
                return "lost"
            span.set_attribute("collector.spool.file", str(path))
            with self._lock:
                self._backed_up += len(batch)
                self._batches_backed_up += 1
            log_event(log, logging.DEBUG, "batch_backed_up", size=len(batch), path=str(path), reason=reason)
            self._listener.batch_saved(len(batch), "backup", reason)
            return "backed_up"

    def _save_rejected(self, items: list[tuple[TagValue, str, str]], *, from_buffer: bool) -> None:
        now = datetime.fromtimestamp(self._wall_clock(), UTC)
        self._write_rejected(rejected_rows(items, now), len(items), from_buffer, items[0][2])

    def reject_invalid(self, items: Sequence[InvalidValue]) -> None:
        """Record readings that failed validation at intake in the rejected CSV, with their reason."""
        if items:
            now = datetime.fromtimestamp(self._wall_clock(), UTC)
            self._write_rejected(invalid_rows(items, now), len(items), False, items[0].reason)

    def _write_rejected(
        self, rows: list[tuple[str, ...]], count: int, from_buffer: bool, example: str
    ) -> None:
        with self._tracer.start_as_current_span(
            REJECTED_SPAN,
            attributes={
                "collector.spool.kind": "rejected",
                "collector.rows": count,
                "collector.reason": example,
            },
            record_exception=False,
        ) as span:
            try:
                path = self._rejected.append(rows)
            except SpoolError as exc:
                _spool_failed(span, exc)
                self._rejected_lost(count, from_buffer, exc)
                return
            span.set_attribute("collector.spool.file", str(path))
        with self._lock:
            if from_buffer:
                self._rejected_rows += count
            else:
                self._invalid_rejected += count
        log_event(log, logging.WARNING, "values_rejected", count=count, example_reason=example)
        self._listener.batch_saved(count, "rejected", example)

    def _rejected_lost(self, count: int, from_buffer: bool, exc: SpoolError) -> None:
        with self._lock:
            if from_buffer:
                self._lost += count
            else:
                self._invalid_lost += count
        log_event(
            log,
            logging.CRITICAL,
            "values_lost",
            "rejected file failed: values lost",
            count=count,
            error=str(exc),
        )
        self._listener.batch_saved(count, "lost", "rejected file failed")

    # ------------------------------------------------------------------ stats

    def stats(self) -> WriterStats:
        with self._lock:
            buffer = self._buffer.stats()
            settled = self._written + self._duplicate + self._rejected_rows + self._backed_up + self._lost
            return WriterStats(
                buffer_size=buffer.size,
                buffer_capacity=buffer.capacity,
                buffer_inserted=buffer.inserted,
                buffer_removed=buffer.removed,
                buffer_overflow=buffer.overflow,
                buffer_high_water=buffer.high_water,
                written=self._written,
                duplicate=self._duplicate,
                rejected=self._rejected_rows,
                backed_up=self._backed_up,
                lost=self._lost,
                in_flight=buffer.removed - settled,
                retry_pending=self._retry_values,
                spilled=self._spilled,
                invalid_rejected=self._invalid_rejected,
                invalid_lost=self._invalid_lost,
                batches_written=self._batches_written,
                attempts_failed=self._attempts_failed,
                batches_backed_up=self._batches_backed_up,
                retries=self._retries,
                last_error=self._last_error,
                last_success_at=self._last_success_at,
                circuit=self.circuit.status(),
            )


def _indexes_valid(result: WriteResult, size: int) -> bool:
    indexes = [error.index for error in result.rejected]
    return len(set(indexes)) == len(indexes) and all(0 <= index < size for index in indexes)


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
    if error.code:
        span.set_attribute("db.response.status_code", error.code)
    span.set_attribute("collector.error.kind", error.kind.value)
    span.record_exception(error)
    span.set_status(trace.Status(trace.StatusCode.ERROR, error.describe()))


def _spool_failed(span: trace.Span, exc: SpoolError) -> None:
    span.set_attribute("error.type", type(exc).__qualname__)
    span.record_exception(exc)
    span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
