"""From a network payload to accepted values: the step the MQTT source and HTTP ingest share.

:meth:`PayloadIntake.take` parses a payload (:mod:`collector.sources.payload`) and makes the
intake's accept call for its valid values. Whoever received the payload acknowledges it only after
``take`` has returned: the accept call is where a value becomes the service's responsibility (in
the buffer, and in the write-ahead log where there is one), so a crash before it leaves the message
unacknowledged and the sender (or the broker) still holds it.

Two ways to treat a payload with problems: ``partial`` (MQTT: nobody can be told, so the good
values are accepted and the bad readings go to the rejected CSV with the reason), or all or nothing
(HTTP: the client is told every reason in the 400 answer and still holds its data, so nothing of
the request is accepted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from collector.logs import RateLimiter, log_event
from collector.model import InvalidValue
from collector.sources.counters import SourceCounters
from collector.sources.intake import Intake
from collector.sources.payload import Parsed, Problem, as_invalid, excerpt, parse_payload

log = logging.getLogger("collector.intake")

REJECTION_LOG_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class Taken:
    """What became of one payload."""

    parsed: Parsed
    accepted: int
    """Values handed to the pipeline (0 when an all-or-nothing payload had problems)."""

    @property
    def problems(self) -> list[Problem]:
        return self.parsed.problems


class RejectionLog:
    """Logs refused messages at most once per interval, with how many were not logged between."""

    def __init__(
        self,
        kind: str,
        *,
        to_csv: bool,
        interval_s: float = REJECTION_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kind = kind
        self._message = (
            "values refused: every reason is in the rejected CSV"
            if to_csv
            else "request refused: the client was answered 400 with every reason"
        )
        self._limiter = RateLimiter(interval_s, clock)
        self._unlogged = 0

    def refused(self, where: str, problems: list[Problem], refused: int) -> None:
        if not self._limiter.ready():
            self._unlogged += 1
            return
        log_event(
            log,
            logging.WARNING,
            "payload_rejected",
            self._message,
            source=self._kind,
            origin=where,
            refused=refused,
            problems=len(problems),
            first=problems[0].describe() if problems else "",
            not_logged_since_last=self._unlogged,
        )
        self._unlogged = 0


class PayloadIntake:
    """Parses payloads and makes the accept call for their values; thread-safe."""

    def __init__(
        self,
        intake: Intake,
        counters: SourceCounters,
        *,
        partial: bool,
        rejection_log: RejectionLog | None = None,
    ) -> None:
        self._intake = intake
        self._counters = counters
        self._partial = partial
        self._rejections = rejection_log or RejectionLog(counters.kind, to_csv=partial)

    @property
    def counters(self) -> SourceCounters:
        return self._counters

    def take(self, payload: bytes, *, where: str, redelivered: bool = False) -> Taken:
        """Accept what ``payload`` holds. Raises :class:`~collector.buffer.BufferClosedError` once
        shutdown has begun (nothing was accepted: do not acknowledge)."""
        parsed = parse_payload(payload)
        return self._deliver(parsed, payload, where, redelivered)

    def refuse(self, payload: bytes, reason: str, *, where: str, redelivered: bool = False) -> Taken:
        """Refuse a whole payload without reading it (too large, say), as a malformed message."""
        parsed = Parsed(problems=[Problem("", reason)])
        return self._deliver(parsed, payload, where, redelivered)

    def _deliver(self, parsed: Parsed, payload: bytes, where: str, redelivered: bool) -> Taken:
        accepted = 0
        whole = not parsed.problems or self._partial
        if parsed.values and whole:
            # The accept call: once it returns, the values are the service's to keep.
            accepted = self._intake.submit_values(parsed.values)
        if parsed.problems:
            if self._partial:
                self._intake.reject(self._rows(parsed.problems, where, payload))
            self._rejections.refused(where, parsed.problems, parsed.refused)
        refused = parsed.refused if whole else parsed.refused + len(parsed.values)
        self._counters.message(
            polls=parsed.polls if whole else 0,
            values=accepted,
            refused=refused,
            redelivered=redelivered,
            timestamps=parsed.timestamps if accepted else (),
        )
        return Taken(parsed, accepted)

    @staticmethod
    def _rows(problems: list[Problem], where: str, payload: bytes) -> list[InvalidValue]:
        start = excerpt(payload)
        return [row for problem in problems for row in as_invalid(problem, where=where, excerpt=start)]
