"""BatchWriter: the worker threads and what each does next; the spill guard; drain and stop.

Each of ``workers`` threads loops over three kinds of work, most urgent first:

1. a failed batch whose retry is due (FR-010: after 1 s, 2 s, 4 s);
2. a probe of the database while the circuit is open (one at a time, every ``probe_interval_s``);
3. a fresh batch from the buffer, taken when ``batch_size`` values wait or the oldest has waited
   ``flush_interval_s`` (FR-008, FR-009), back to back while a backlog remains.

This module only decides which; :class:`~collector.writer.handler.BatchHandler` does it. A spill
guard thread saves to backup the oldest values that the buffer moved out beyond its spill level,
which happens only when the writers are stuck (a database that hangs) or too slow: it takes only
what the writers could not.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial

from opentelemetry import trace

from collector.backup import CsvSpool
from collector.buffer import Batch, TagBuffer
from collector.circuit import CircuitBreaker
from collector.logs import RateLimiter, log_event
from collector.model import TagValue
from collector.retry import RetryPolicy
from collector.sinks.base import Sink
from collector.writer.events import WriterListener
from collector.writer.handler import BatchHandler, Shutdown
from collector.writer.ledger import Ledger, WriterStats
from collector.writer.retry_queue import PendingRetry, RetryQueue
from collector.writer.spill_handoff import SpillHandoff
from collector.writer.spooler import Spooler

log = logging.getLogger("collector.writer")

Work = Callable[[], None]
SPILL_REASON = "buffer spill: writers not keeping up"


class BatchWriter:
    """Moves values from a :class:`TagBuffer` into a :class:`Sink`; see the module docstring.

    Every value taken from the buffer ends written, duplicate, rejected, backed up or lost, and is
    in flight until then; :meth:`stats` reads all of these with the buffer's counters as one
    consistent snapshot (see :mod:`collector.writer.ledger`).
    """

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
        on_settled: Callable[[Sequence[TagValue]], None] | None = None,
    ) -> None:
        """``on_settled`` is told each batch taken from the buffer once its every value is final and
        durable (committed, duplicate, in an fsynced backup or rejected file, or counted lost); the
        write-ahead log releases the batch then. It runs on a writer thread, outside every lock."""
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be positive, got {flush_interval_s}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._buffer = buffer
        self._flush_interval = flush_interval_s
        self._worker_count = workers
        self._spill = spill
        self._clock = clock
        listener = listener or WriterListener()
        # The global tracer is a no-op until someone installs a TracerProvider; the service passes
        # the one it configured from the OTEL_* environment.
        tracer = tracer or trace.get_tracer("collector.writer")
        self.circuit = CircuitBreaker(probe_interval_s, clock=clock, wall_clock=wall_clock)
        self._ledger = Ledger(wall_clock)
        self._retries = RetryQueue()
        self._shutdown = Shutdown(clock)
        settled = on_settled or _ignore
        self._spooler = Spooler(
            backup, rejected, self._ledger, listener, tracer, wall_clock=wall_clock, on_settled=settled
        )
        self._handler = BatchHandler(
            sink,
            self._spooler,
            self._ledger,
            self._retries,
            self.circuit,
            shutdown=self._shutdown,
            retry=retry or RetryPolicy(),
            listener=listener,
            tracer=tracer,
            clock=clock,
            on_settled=settled,
        )
        self._batch_ids = itertools.count(1)
        self._handoff = SpillHandoff(buffer.capacity)
        self._threads: list[threading.Thread] = []
        self._started = False
        self._spill_log = RateLimiter(10.0, clock)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._started:
            raise RuntimeError("writer already started")
        self._started = True
        for index in range(self._worker_count):
            thread = threading.Thread(target=self._run_worker, name=f"writer-{index + 1}", daemon=True)
            self._threads.append(thread)
        if self._spill:
            # The producer that overfills the ring saves its own excess; the spill guard thread
            # is the safety net for anything left in the spill queue.
            self._buffer.set_spill_handler(self._save_spilled)
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
        if not self._shutdown.begin(timeout_s):
            return 0
        deadline = self._shutdown.deadline
        assert deadline is not None
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
        self._join(deadline)
        # Past the deadline: whatever the workers have not taken goes to backup from here, and so
        # does what a stuck spill guard has not.
        while leftover := self._buffer.take(self._buffer.batch_size):
            self._spooler.save(leftover, "shutdown deadline", batch_id=next(self._batch_ids))
        while (encoded := self._handoff.take(0.0)) is not None:
            batch, rows, batch_id = encoded
            try:
                self._spooler.save(batch, "shutdown deadline", batch_id=batch_id, encoded=rows)
            finally:
                self._handoff.done(len(batch))
        if spilled := self._buffer.wait_for_spill(0.0):
            self._spooler.save(spilled, "shutdown deadline", batch_id=next(self._batch_ids))
        self._handler.save_retries("shutdown deadline")
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

    def stats(self) -> WriterStats:
        return self._ledger.snapshot(self._buffer, lambda: self._retries.values, self.circuit.status)

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

    def _next_work(self) -> Work | None:
        """What this worker does next: a due retry, a probe, or a fresh batch (waiting for one
        until the next retry or probe is due); None when the writer has stopped and nothing is
        left."""
        while True:
            stopping = self._shutdown.stopping
            due = self._retries.pop_due(self._clock(), all_due=stopping)
            if isinstance(due, PendingRetry):
                return partial(self._guarded, due.batch, due.batch_id, partial(self._handler.retry, due))
            if self.circuit.claim_probe():
                return self._handler.probe
            waits = [w for w in (due, self.circuit.seconds_to_probe()) if w is not None]
            batch = self._buffer.next_batch(self._flush_interval, min(waits) if waits else None)
            if batch:
                batch_id = next(self._batch_ids)
                return partial(self._guarded, batch, batch_id, partial(self._handler.fresh, batch, batch_id))
            if stopping and self._buffer.closed and not len(self._buffer) and not len(self._retries):
                return None

    def _guarded(self, batch: list[TagValue], batch_id: int, handle: Work) -> None:
        """Run a handler; if it fails unexpectedly, the batch it held still goes to backup."""
        try:
            handle()
        except Exception as exc:
            log.exception("unexpected error handling batch %d of %d values", batch_id, len(batch))
            self._spooler.save(batch, f"internal error: {type(exc).__name__}", batch_id=batch_id)

    # ------------------------------------------------------------------ spill guard

    def _run_spill_guard(self) -> None:
        """Writes and fsyncs what the producers encoded (:meth:`_save_spilled`), and saves whatever
        they left in the spill queue itself."""
        while True:
            try:
                encoded = self._handoff.take(0.1)
                if encoded is not None:
                    batch, rows, batch_id = encoded
                    try:
                        self._spooler.save(batch, SPILL_REASON, batch_id=batch_id, encoded=rows)
                    finally:
                        self._handoff.done(len(batch))
                    continue
                batch = self._buffer.wait_for_spill(0.0)
                if batch:
                    self._note_spill(batch)
                    self._spooler.save(batch, SPILL_REASON, batch_id=next(self._batch_ids))
                elif self._shutdown.stopping and self._buffer.closed and self._handoff.idle:
                    return  # nothing waits and nothing more can join
            except Exception:
                log.exception("spill guard error")

    def _save_spilled(self) -> None:
        """The spill handler the producers call after a put that spilled (see :mod:`collector.buffer`):
        the producer encodes its own excess, the spill guard writes and fsyncs it. While the guard
        is behind by a ring's worth (a slow or hanging disk) the producer takes nothing, so it never
        waits for the disk: the values stay in the spill queue, and once that is full the ring
        overwrites and counts, as without a handler."""
        if self._handoff.full:
            return
        with self._handoff.producing():
            batch = self._buffer.wait_for_spill(0.0)
            if batch:
                self._note_spill(batch)
                self._handoff.put((batch, self._spooler.encode(batch), next(self._batch_ids)))

    def _note_spill(self, batch: Batch) -> None:
        spilled = self._ledger.spilled(len(batch))
        if self._spill_log.ready():
            stats = self._buffer.stats()
            log_event(
                log,
                logging.WARNING,
                "buffer_spill",
                "buffer nearly full: saving oldest values to backup (writers not keeping up)",
                size=stats.size,
                capacity=stats.capacity,
                spilled_total=spilled,
            )


def _ignore(_batch: Sequence[TagValue]) -> None:
    """No write-ahead log: nothing to release."""
