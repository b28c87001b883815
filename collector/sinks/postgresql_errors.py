"""What a psycopg error means for the PostgreSQL sink and its key lookup.

Errors are sorted by SQLSTATE class: connection exceptions (08), operator intervention such as
admin shutdown and cannot-connect-now (57), insufficient resources (53), transaction rollbacks
(40) and lock waits are transient; undefined table or column, missing privilege or unique key
(42), authentication (28) and unknown database (3D) are permanent. Errors that carry no SQLSTATE
(a refused or timed-out connection, a connection lost mid-call) are transient, except a failed
login, which libpq reports as text only and which is recognised by its message.

Data exceptions (22) and integrity violations (23) are about one row, not the batch: the sink
isolates the row and reports it as rejected with its SQLSTATE.
"""

from __future__ import annotations

import re

import psycopg
from psycopg_pool import PoolTimeout

from collector.sinks.base import PermanentSinkError, RowError, SinkError, TransientSinkError

ROW_ERROR_CLASSES = frozenset({"22", "23"})
"""Data exceptions and integrity violations: the row is bad, not the batch or the database."""

TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58", "XX"})
"""Connection exception, transaction rollback, insufficient resources, operator intervention
(admin shutdown, cannot connect now, query cancelled by statement_timeout), system error, internal
error: the database may well accept the same batch a little later."""

TRANSIENT_STATES = frozenset({"55P03", "25P03", "25006"})
"""Lock not available, idle-in-transaction timeout, read-only transaction (a failover in
progress: the address will soon reach a writable primary again)."""

CREDENTIAL_STATES = frozenset({"28P01", "28000"})
"""Invalid password, invalid authorization: the server refused the login itself."""

CALL_TIMEOUT = "CALL_TIMEOUT"
"""The code of a call the client-side deadline abandoned (no answer at all, not even an error)."""

# libpq reports a failed login as text only (no SQLSTATE). These messages mean that retrying cannot
# help until an operator acts; the code given is the SQLSTATE the server sent with the message.
_LOGIN_REFUSALS = (
    (re.compile(r"password authentication failed|authentication failed for user"), "28P01"),
    (re.compile(r"role \".*\" does not exist|no pg_hba\.conf entry|not permitted to log in"), "28000"),
    (re.compile(r"database \".*\" does not exist"), "3D000"),
    (re.compile(r"permission denied for database"), "42501"),
)


def is_row_error(exc: BaseException) -> bool:
    state: str | None = getattr(exc, "sqlstate", None)
    return state is not None and state[:2] in ROW_ERROR_CLASSES


def classify(exc: BaseException) -> SinkError:
    """The :class:`SinkError` a psycopg error means for the batch (see the module docstring)."""
    text = message(exc)
    if isinstance(exc, PoolTimeout):
        return TransientSinkError(f"no pooled connection: {text}", code="POOL_TIMEOUT")
    state: str | None = getattr(exc, "sqlstate", None)
    if state:
        if state[:2] in TRANSIENT_CLASSES or state in TRANSIENT_STATES:
            return TransientSinkError(text, code=state, from_database=True)
        return PermanentSinkError(
            text, code=state, from_database=True, credentials=state in CREDENTIAL_STATES
        )
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        for pattern, code in _LOGIN_REFUSALS:
            if pattern.search(text):
                return PermanentSinkError(
                    text, code=code, from_database=True, credentials=code in CREDENTIAL_STATES
                )
        code = "08001" if "connection failed" in text or "timeout" in text else "08006"
        return TransientSinkError(text, code=code)
    return PermanentSinkError(text, code=type(exc).__name__)


def call_timeout(deadline_s: float) -> TransientSinkError:
    """The error for a call that got no answer within the client-side deadline."""
    return TransientSinkError(f"no answer within {deadline_s:g} s; connection abandoned", code=CALL_TIMEOUT)


def row_error(index: int, exc: psycopg.Error) -> RowError:
    """The rejection of the batch's row ``index`` by the server, with its SQLSTATE."""
    return RowError(index, getattr(exc, "sqlstate", None) or "22000", message(exc))


def message(exc: BaseException) -> str:
    """The server's primary message (or the exception's text), on one line."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(exc)
    return " ".join(text.split())
