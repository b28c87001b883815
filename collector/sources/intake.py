"""Intake: turns the polling engine's PollingData into validated TagValues in the buffer.

A :class:`QueueSource` thread consumes the DataQueue continuously (FR-001). The polling engine
only ever does ``queue.put`` on an unbounded queue, so nothing here can slow it; this thread does
the per-value work (validation, conversion) and hands each poll to the buffer in one ``put_many``.
Readings that cannot be stored go to the rejected CSV with the reason, never silently away
(:mod:`collector.sources.invalid`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from collector.buffer import BufferClosedError, TagBuffer
from collector.logs import log_event
from collector.model import (
    MAX_TEXT_BYTES,
    InvalidValue,
    PollingData,
    Quality,
    TagValue,
    readings,
    timestamp_error,
    to_utc,
    validation_error,
)

log = logging.getLogger("collector.intake")

MAX_KNOWN_NAMES = 100_000
"""Tag names remembered as valid, for intake's fast path (a plant's tags, with room to spare)."""

_PLAIN = frozenset({float, int, bool})
_SHORT_TEXT = MAX_TEXT_BYTES // 4
"""Text no longer than this cannot exceed the byte limit, whatever its characters."""
_new_tuple = tuple.__new__

InvalidHandler = Callable[[Sequence[InvalidValue]], int]
"""Takes the readings refused at intake (to the rejected CSV); returns how many of them were lost."""


@dataclass(frozen=True, slots=True)
class IntakeStats:
    polls: int
    received: int
    """Readings taken off the DataQueue or submitted directly, valid or not."""
    accepted: int
    """Readings put in the buffer."""
    invalid: int
    """Readings refused by validation (handed to the rejected CSV)."""
    rejected: int = 0
    """Invalid readings in the rejected CSV (part of the identity's ``rejected``)."""
    lost: int = 0
    """Invalid readings no rejected file could take (part of the identity's ``lost``)."""


class Intake:
    """Validates readings and puts them in the buffer; thread-safe."""

    def __init__(self, buffer: TagBuffer, on_invalid: InvalidHandler, *, naive_is_utc: bool = True) -> None:
        self._buffer = buffer
        self._on_invalid = on_invalid
        self._naive_is_utc = naive_is_utc
        self._valid_names: set[str] = set()
        self._lock = threading.Lock()
        self._polls = 0
        self._received = 0
        self._accepted = 0
        self._invalid = 0
        self._rejected = 0
        self._lost = 0

    def submit(self, poll: PollingData) -> int:
        """Take one poll; returns how many of its readings entered the buffer."""
        stamp = poll.timestamp
        problem = timestamp_error(stamp)
        valid: list[TagValue] = []
        invalid: list[InvalidValue] = []
        if problem is not None:
            invalid = [InvalidValue(n, v, stamp, q, problem) for n, v, q in readings(poll)]
        else:
            assert isinstance(stamp, datetime)
            utc = to_utc(stamp, naive_is_utc=self._naive_is_utc)
            # The fast path: a tag name already seen to be valid, with a number, a boolean or a
            # short text, needs no other check, and the tuple is made without the NamedTuple's
            # keyword-handling constructor. Everything else gets the full validation.
            known = self._valid_names
            good = Quality.GOOD.value
            for name, value in poll.values.items():
                kind = type(value)
                if name in known and (kind in _PLAIN or (kind is str and len(value) <= _SHORT_TEXT)):  # type: ignore[arg-type]
                    valid.append(_new_tuple(TagValue, (name, value, utc, good)))
                else:
                    checked = self._check(name, value, good, stamp, utc)
                    (valid if type(checked) is TagValue else invalid).append(checked)  # type: ignore[arg-type]
            bad = Quality.BAD.value
            for name in poll.errors:
                checked = self._check(name, None, bad, stamp, utc)
                (valid if type(checked) is TagValue else invalid).append(checked)  # type: ignore[arg-type]
        return self._deliver(valid, invalid, polls=1)

    def _check(
        self, name: object, value: object, quality: str, stamp: datetime, utc: datetime
    ) -> TagValue | InvalidValue:
        """The full validation: the value to buffer, or the reading refused with its reason."""
        reason = validation_error(name, value, quality)
        if reason is not None:
            return InvalidValue(name, value, stamp, quality, reason)
        known = self._valid_names
        # Bounded, so a source that invents names forever cannot grow it; once full it keeps the
        # names it has rather than starting over, since forgetting them all would send every value
        # of a plant with more tags than this down the full check over and over.
        if len(known) < MAX_KNOWN_NAMES:
            known.add(name)  # type: ignore[arg-type]
        return TagValue(name, value, utc, quality)  # type: ignore[arg-type]

    def submit_values(self, values: Iterable[TagValue]) -> int:
        """Take ready-made TagValues (for applications that build them themselves)."""
        valid: list[TagValue] = []
        invalid: list[InvalidValue] = []
        for item in values:
            name, value, stamp, quality = item
            reason = timestamp_error(stamp) or validation_error(name, value, quality)
            if reason is None:
                valid.append(TagValue(name, value, to_utc(stamp, naive_is_utc=self._naive_is_utc), quality))
            else:
                invalid.append(InvalidValue(name, value, stamp, quality, reason))
        return self._deliver(valid, invalid, polls=0)

    def reject(self, items: Sequence[InvalidValue]) -> None:
        """Refuse readings that could not even be read as a poll."""
        self._deliver([], list(items), polls=0)

    def _deliver(self, valid: list[TagValue], invalid: list[InvalidValue], *, polls: int) -> int:
        if valid:
            self._buffer.put_many(valid)  # raises BufferClosedError after shutdown began
        lost = self._on_invalid(invalid) if invalid else 0
        with self._lock:
            self._polls += polls
            self._received += len(valid) + len(invalid)
            self._accepted += len(valid)
            self._invalid += len(invalid)
            self._rejected += len(invalid) - lost
            self._lost += lost
        return len(valid)

    def stats(self) -> IntakeStats:
        with self._lock:
            return IntakeStats(
                self._polls, self._received, self._accepted, self._invalid, self._rejected, self._lost
            )


class QueueSource:
    """Consumes a DataQueue on its own thread until stopped, then drains what is left."""

    def __init__(
        self, data_queue: queue.Queue[object], intake: Intake, *, poll_timeout_s: float = 0.2
    ) -> None:
        self._queue = data_queue
        self._intake = intake
        self._poll_timeout_s = poll_timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intake", daemon=True)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after handing everything already on the queue to the buffer."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._poll_timeout_s)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            try:
                self._handle(item)
            except BufferClosedError:
                log_event(log, logging.ERROR, "intake_after_close", "value arrived after shutdown began")
                return
            except Exception:
                log.exception("intake error")

    def _handle(self, item: object) -> None:
        if isinstance(item, PollingData):
            self._intake.submit(item)
        elif isinstance(item, TagValue):
            self._intake.submit_values([item])
        elif isinstance(item, list | tuple) and all(isinstance(v, TagValue) for v in item):
            self._intake.submit_values(item)
        else:
            reason = f"unsupported item on the DataQueue: {type(item).__name__}"
            log_event(log, logging.ERROR, "intake_unsupported_item", reason)
            self._intake.reject([InvalidValue(repr(item)[:100], None, None, "", reason)])
