"""Spend few logins while the database refuses the collector's credentials.

Oracle's DEFAULT profile locks an account after 10 refused logins in a row (FAILED_LOGIN_ATTEMPTS),
and the lock stays after the password is fixed (ORA-28000 until a DBA unlocks it). A collector
that probes every 5 s with a wrong password would lock its own account in under a minute. So
after a refused login, :class:`LoginGuard` answers for the database, without a login, until the
next attempt is due: ``first_s`` after the first refusal, doubling up to ``max_s``, and after
``max_failures`` refusals in a row none at all. When the configured password changes (a password
file rewritten), the next call tries at once. A wrong password for a whole night therefore costs
``max_failures`` logins, under the profile's limit, and the service says plainly, in its errors,
logs and metrics, that the database refuses its credentials.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from collector.logs import log_event
from collector.model import TagValue
from collector.sinks.base import PermanentSinkError, Sink, SinkError, WriteResult

log = logging.getLogger("collector.sinks.login")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class LoginBackoff:
    """When to try again after a refused login: ``first_s`` after the first refusal, doubling up
    to ``max_s``; after ``max_failures`` refusals in a row, not until the credentials change
    (0: keep trying at ``max_s``)."""

    first_s: float = 60.0
    max_s: float = 1800.0
    max_failures: int = 5

    def __post_init__(self) -> None:
        if self.first_s <= 0 or self.max_s < self.first_s:
            raise ValueError(f"need 0 < first_s <= max_s, got {self.first_s} and {self.max_s}")
        if self.max_failures < 0:
            raise ValueError(f"max_failures must not be negative, got {self.max_failures}")

    def delay_after(self, failures: int) -> float | None:
        """Seconds until the next attempt after ``failures`` refusals in a row; None: no more."""
        if failures <= 0:
            return 0.0
        if self.max_failures and failures >= self.max_failures:
            return None
        return float(min(self.max_s, self.first_s * 2 ** (failures - 1)))


@dataclass(frozen=True, slots=True)
class LoginStatus:
    """What the guard knows, for the metrics and the status."""

    refused: bool
    """The last login was refused (wrong password, account locked or expired)."""
    failed_logins: int
    """Refused logins in a row since the last good one: what the profile counts."""
    suspended: bool
    """No more attempts until the credentials change."""
    next_attempt_in_s: float | None
    code: str | None
    """The database's code for the refusal (ORA-01017, ORA-28000, ORA-28001)."""


class LoginGuard:
    """Wraps a sink whose database counts refused logins; see the module docstring.

    ``secret`` reads the configured password (a password file is read again each time), so a
    changed password is noticed and tried at once; ``change_hint`` tells the operator what
    counts as a change. Every other call and error passes straight through.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        secret: Callable[[], str | None],
        backoff: LoginBackoff | None = None,
        change_hint: str = "the password file changes",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = sink
        self.system_name = sink.system_name
        self.table = sink.table
        self._secret = secret
        self._backoff = backoff or LoginBackoff()
        self._hint = change_hint
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._refusal: SinkError | None = None
        self._refused_secret: str | None = None
        self._next_at: float | None = None
        self._trying = False

    # ------------------------------------------------------------------ the Sink protocol

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        self._admit()
        try:
            result = self._sink_call(lambda: self.inner.write(batch))
        finally:
            self._done_trying()
        return result

    def ping(self) -> None:
        self._admit()
        try:
            self._sink_call(self.inner.ping)
        finally:
            self._done_trying()

    def close(self) -> None:
        self.inner.close()

    def login_status(self) -> LoginStatus:
        with self._lock:
            refused = self._refusal is not None
            delay = self._next_at - self._clock() if self._next_at is not None else None
            return LoginStatus(
                refused=refused,
                failed_logins=self._failures,
                suspended=refused and self._next_at is None,
                next_attempt_in_s=max(0.0, delay) if refused and delay is not None else None,
                code=self._refusal.code if self._refusal is not None else None,
            )

    # ------------------------------------------------------------------ the rules

    def _admit(self) -> None:
        """Return if the call may reach the database; raise the standing refusal if not."""
        with self._lock:
            refusal = self._refusal
            if refusal is None:
                return
            if self._trying:
                raise self._standing(refusal)  # one attempt at a time while refused
            changed = self._secret_changed()
            due = self._next_at is not None and self._clock() >= self._next_at
            if not (changed or due):
                raise self._standing(refusal)
            self._trying = True
        if changed:
            log_event(log, logging.WARNING, "credentials_changed", "password changed; trying to log in now")

    def _sink_call(self, call: Callable[[], _T]) -> _T:
        try:
            result = call()
        except SinkError as exc:
            if not exc.credentials:
                self._not_decided()
                raise
            self._refused(exc)
            with self._lock:
                raise self._standing(exc) from exc
        self._accepted()
        return result

    def _done_trying(self) -> None:
        with self._lock:
            self._trying = False

    def _secret_changed(self) -> bool:
        try:
            current = self._secret()
        except (OSError, ValueError, IndexError):
            return False  # a password file being rewritten: look again next time
        return current is not None and current != self._refused_secret

    def _refused(self, exc: SinkError) -> None:
        try:
            secret = self._secret()
        except (OSError, ValueError, IndexError):
            secret = None
        with self._lock:
            self._failures += 1
            self._refusal = exc
            self._refused_secret = secret
            delay = self._backoff.delay_after(self._failures)
            self._next_at = None if delay is None else self._clock() + delay
            failures = self._failures
        if delay is None:
            log_event(
                log,
                logging.ERROR,
                "login_attempts_suspended",
                f"credentials refused {failures} times in a row; no more login attempts until {self._hint}",
                code=exc.code,
                failed_logins=failures,
            )
        else:
            log_event(
                log,
                logging.ERROR,
                "credentials_refused",
                "the database refused the collector's credentials",
                code=exc.code,
                failed_logins=failures,
                next_attempt_in_s=round(delay),
                error=str(exc),
            )

    def _not_decided(self) -> None:
        # Refused before, and this attempt failed for another reason (the database is down): the
        # login was not judged, so the count stands and the wait starts again.
        with self._lock:
            if self._refusal is None:
                return
            delay = self._backoff.delay_after(self._failures)
            self._next_at = None if delay is None else self._clock() + delay

    def _accepted(self) -> None:
        with self._lock:
            if self._refusal is None:
                return
            failures, self._failures = self._failures, 0
            self._refusal = None
            self._refused_secret = None
            self._next_at = None
        log_event(
            log,
            logging.WARNING,
            "credentials_accepted",
            "the database accepts the collector's credentials again",
            refused_before=failures,
        )

    def _standing(self, refusal: SinkError) -> PermanentSinkError:
        """The error for a call the guard answers itself: the refusal, and when it tries again."""
        if self._next_at is None:
            when = f"no more login attempts until {self._hint}"
        else:
            wait = max(0.0, self._next_at - self._clock())
            when = f"next login attempt in {wait:.0f} s, or as soon as {self._hint}"
        return PermanentSinkError(
            f"credentials refused by the database {self._failures} time(s) in a row ({refusal}); {when}",
            code=refusal.code,
            from_database=refusal.from_database,
            credentials=True,
        )
