"""One call to a sink, judged by the rules that keep data safe; shared by the writer and replay.

- A :class:`SinkError` is what the sink says it is (transient or permanent).
- Any other exception is a sink bug or a driver error nobody classified: it is treated as
  transient, so the retry schedule and then the backup CSV keep the data safe, and the original
  exception stays the ``__cause__`` (with its traceback in the log) for the operator.
- A result whose counts do not add up to the batch (a row counted twice, a row missing, a row error
  pointing outside the batch) means nobody knows which rows are stored: it is a transient failure
  too (``SINK_MISCOUNT``), and the batch is retried whole, which the primary key makes idempotent.

What happens after a failure (a retry queue in the service, a sleep in replay) is the caller's
business; this module only says what one attempt came to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from collector.model import TagValue
from collector.sinks.base import WRITE_ATTEMPT, Sink, SinkError, TransientSinkError, WriteResult

log = logging.getLogger("collector.write_attempt")

MISCOUNT_CODE = "SINK_MISCOUNT"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one call to the sink came to: a trustworthy ``result``, or the ``error`` to act on."""

    result: WriteResult | None
    error: SinkError | None
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.result is not None


def write_once(
    sink: Sink,
    batch: Sequence[TagValue],
    *,
    attempt: int = 1,
    clock: Callable[[], float] = time.monotonic,
) -> Attempt:
    """Hand ``batch`` to ``sink`` once (telling it which ``attempt`` this is, see
    :data:`~collector.sinks.base.WRITE_ATTEMPT`) and judge the answer; never raises for the sink."""
    started = clock()
    result: WriteResult | None = None
    error: SinkError | None = None
    token = WRITE_ATTEMPT.set(attempt)
    try:
        result = sink.write(batch)
    except SinkError as exc:
        error = exc
    except Exception as exc:
        log.exception("sink raised an unclassified error")
        error = TransientSinkError(f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
    finally:
        WRITE_ATTEMPT.reset(token)
    duration = clock() - started
    if result is not None and not accounts_for_every_row(result, len(batch)):
        error = TransientSinkError(
            f"sink accounted for {result.total} of {len(batch)} rows", code=MISCOUNT_CODE
        )
        result = None
    return Attempt(result, error, duration)


def accounts_for_every_row(result: WriteResult, size: int) -> bool:
    """True if ``result`` names every row of a batch of ``size`` exactly once."""
    if result.total != size:
        return False
    indexes = [error.index for error in result.rejected]
    return len(set(indexes)) == len(indexes) and all(0 <= index < size for index in indexes)
