"""What the writer tells its listeners (metrics, traces, benchmarks), and the words it uses.

A listener is called outside every lock. :class:`BatchAttempt` is one call to the sink, passed as
one object so that a listener takes what it needs and a new field changes no signature.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from collector.circuit import CircuitStatus
from collector.model import TagValue
from collector.sinks.base import SinkError, WriteResult


class AttemptOutcome(StrEnum):
    """Where a batch went after one attempt (the span attribute ``collector.batch.outcome``)."""

    WRITTEN = "written"
    """The sink answered for every row: written, duplicate or rejected."""
    RETRY = "retry"
    """A transient failure: the batch waits in the retry queue."""
    BACKED_UP = "backed_up"
    """The batch is in the backup CSV (permanent error, retries exhausted, shutting down)."""
    LOST = "lost"
    """No backup directory could take the batch; counted lost."""


class Destination(StrEnum):
    """Where values that did not reach the database went."""

    BACKUP = "backup"
    REJECTED = "rejected"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class BatchAttempt:
    """One call to the sink: ``result`` if it answered for every row, ``error`` if it failed."""

    batch: Sequence[TagValue]
    attempt: int
    """1 for the first try, 2 for the first retry, ..."""
    duration_s: float
    result: WriteResult | None
    error: SinkError | None

    @property
    def ok(self) -> bool:
        return self.result is not None


def origin(batch_id: int | None) -> dict[str, Any]:
    """The fields that tie a log line to its batch and to the thread that handled it, so that a
    batch's attempts, retries and its final fate can be followed through the log."""
    return {"batch": batch_id, "worker": threading.current_thread().name}


class WriterListener:
    """Per-batch notifications for metrics and traces, called outside every lock. The methods do
    nothing here; a listener overrides the ones it needs."""

    def batch_attempted(self, event: BatchAttempt) -> None:
        """One call to the sink."""

    def batch_saved(self, size: int, destination: Destination, reason: str) -> None:
        """Values went to the backup or rejected files, or were lost."""

    def circuit_changed(self, status: CircuitStatus) -> None:
        """The circuit opened or closed."""
