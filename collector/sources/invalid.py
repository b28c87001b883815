"""Readings refused at intake go to the rejected CSV with their reason, never silently away.

A reading that fails validation (no tag name, a value of an unsupported type, a timestamp that is
not a datetime) never enters the buffer; :class:`RejectedReadings` writes it, as it was given, to
the rejected CSV with the error code ``INVALID`` and the reason, in a ``collector.rejected.write``
span. If no directory can take it, it is counted lost, loudly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from opentelemetry import trace

from collector.backup import CsvSpool, SpoolError, traced_append
from collector.logs import log_event
from collector.model import InvalidValue
from collector.spool_format import invalid_rows

log = logging.getLogger("collector.intake")


class RejectedReadings:
    """Writes invalid readings to the rejected CSV; called by :class:`~collector.sources.intake.Intake`."""

    def __init__(
        self,
        spool: CsvSpool,
        *,
        tracer: trace.Tracer | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._spool = spool
        self._tracer = tracer or trace.get_tracer("collector.intake")
        self._wall_clock = wall_clock

    def __call__(self, items: Sequence[InvalidValue]) -> int:
        """Write ``items``; returns how many of them were lost (0, or all when no file took them)."""
        if not items:
            return 0
        reason = items[0].reason
        rows = invalid_rows(items, datetime.fromtimestamp(self._wall_clock(), UTC))
        try:
            traced_append(self._tracer, self._spool, rows, reason=reason)
        except SpoolError as exc:
            log_event(
                log,
                logging.CRITICAL,
                "values_lost",
                "rejected file failed: values lost",
                count=len(items),
                error=str(exc),
            )
            return len(items)
        log_event(log, logging.WARNING, "values_rejected", count=len(items), example_reason=reason)
        return 0
