"""The writer's spooler: values the database did not take go to the backup or rejected CSV.

A batch that cannot be written (retries exhausted, a permanent error, the circuit open, shutdown,
the spill guard) goes to the backup CSV (FR-011); rows the database refused go to the rejected CSV
with the database's error code. Each write runs in its own span (``collector.backup.write``,
``collector.rejected.write``), a child of the attempt that sent it there, and is counted in the
ledger only once the file is fsynced. If no directory can take the rows they are counted lost,
loudly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from opentelemetry import trace

from collector.backup import CsvSpool, SpoolError, traced_append
from collector.logs import log_event
from collector.model import TagValue
from collector.spool_format import EncodedRows, backup_payload, rejected_rows
from collector.writer.events import AttemptOutcome, Destination, WriterListener, origin
from collector.writer.ledger import Ledger

log = logging.getLogger("collector.writer")


class Spooler:
    """Writes batches the writer gives up on to the backup CSV and refused rows to the rejected CSV."""

    def __init__(
        self,
        backup: CsvSpool,
        rejected: CsvSpool,
        ledger: Ledger,
        listener: WriterListener,
        tracer: trace.Tracer,
        *,
        wall_clock: Callable[[], float] = time.time,
        on_settled: Callable[[Sequence[TagValue]], None] = lambda _batch: None,
    ) -> None:
        self._backup = backup
        self._on_settled = on_settled
        self._rejected = rejected
        self._ledger = ledger
        self._listener = listener
        self._tracer = tracer
        self._wall_clock = wall_clock

    def encode(self, batch: Sequence[TagValue]) -> EncodedRows:
        """``batch`` as the backup file's bytes, stamped with the time of this attempt."""
        return backup_payload(batch, datetime.fromtimestamp(self._wall_clock(), UTC))

    def save(
        self,
        batch: list[TagValue],
        reason: str,
        *,
        batch_id: int | None = None,
        encoded: EncodedRows | None = None,
    ) -> AttemptOutcome:
        """Put a batch taken from the buffer into the backup CSV (``encoded`` already, if given),
        or count it lost; returns which."""
        if not batch:
            return AttemptOutcome.BACKED_UP
        rows = encoded if encoded is not None else self.encode(batch)
        try:
            path = traced_append(self._tracer, self._backup, rows, reason=reason)
        except SpoolError as exc:
            self._ledger.lost(len(batch))
            log_event(
                log,
                logging.CRITICAL,
                "values_lost",
                "backup failed: values lost",
                count=len(batch),
                error=str(exc),
                **origin(batch_id),
            )
            self._listener.batch_saved(len(batch), Destination.LOST, reason)
            self._on_settled(batch)
            return AttemptOutcome.LOST
        self._ledger.backed_up(len(batch))
        log_event(
            log,
            logging.DEBUG,
            "batch_backed_up",
            size=len(batch),
            path=str(path),
            reason=reason,
            **origin(batch_id),
        )
        self._listener.batch_saved(len(batch), Destination.BACKUP, reason)
        self._on_settled(batch)
        return AttemptOutcome.BACKED_UP

    def save_refused(self, items: list[tuple[TagValue, str, str]], *, batch_id: int | None = None) -> None:
        """Put rows the database refused, as (value, error code, reason), in the rejected CSV."""
        if not items:
            return
        count, example = len(items), items[0][2]
        rows = rejected_rows(items, datetime.fromtimestamp(self._wall_clock(), UTC))
        try:
            traced_append(self._tracer, self._rejected, rows, reason=example)
        except SpoolError as exc:
            self._ledger.lost(count)
            log_event(
                log,
                logging.CRITICAL,
                "values_lost",
                "rejected file failed: values lost",
                count=count,
                error=str(exc),
                **origin(batch_id),
            )
            self._listener.batch_saved(count, Destination.LOST, "rejected file failed")
            return
        self._ledger.rejected(count)
        log_event(
            log, logging.WARNING, "values_rejected", count=count, example_reason=example, **origin(batch_id)
        )
        self._listener.batch_saved(count, Destination.REJECTED, example)

    def rotate_backup(self) -> None:
        """Close the current backup file (an outage is over: its file is complete and can be replayed)."""
        self._backup.rotate("the database is back")
