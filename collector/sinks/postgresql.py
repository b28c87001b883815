"""PostgreSQL sink (psycopg 3 and a psycopg_pool pool of ``pool_size`` connections).

A batch is written by one statement that unnests five arrays into the table::

    INSERT INTO tag_data (...) SELECT * FROM unnest($1::text[], $2::numeric[], ...)
        ON CONFLICT (tag_name, timestamp) DO NOTHING

with the arrays sent in binary, on an autocommit connection: one round trip, one implicit
transaction, and the row count says how many rows were new, so ``batch size - row count`` are
duplicates (FR-016), including rows an earlier attempt committed before its acknowledgement was
lost. Numbers travel as their exact decimal text (``repr`` of a float), so NUMERIC stores 0.1 as
0.1, not as the float's binary expansion. If the statement fails on a bad row (SQLSTATE class 22
data exception or 23 integrity violation) the batch is written again in one transaction, halving
it under savepoints until each bad row stands alone: the bad rows are reported, the good ones
committed.

Errors are sorted by SQLSTATE class: connection exceptions (08), operator intervention such as
admin shutdown and cannot-connect-now (57), insufficient resources (53), transaction rollbacks
(40) and lock waits are transient; undefined table or column, missing privilege or unique key
(42), authentication (28) and unknown database (3D) are permanent. Errors that carry no SQLSTATE
(a refused or timed-out connection, a connection lost mid-call) are transient, except a failed
login, which libpq reports as text only and which is recognised by its message.

Every wait is bounded: ``connect_timeout_s`` for a new connection, ``pool_wait_timeout_s`` for a
pooled one (the pool's getconn blocks while the server is down), ``call_timeout_s`` as the
server's ``statement_timeout``, and the same again (plus a second) as a client-side deadline that
shuts the socket down if the server, or anything between, accepts a call and never answers.

The sink can be built while the server is down: the pool fills in the background. ``ping`` does
not use the pool: it opens its own connection, so it reports why the server refuses (wrong
password, unknown database) rather than a pool timeout, and so it works while every pooled
connection is busy. After a failure, a successful ping replaces the pool's idle connections,
which a server restart has made stale.
"""

from __future__ import annotations

import math
import os
import re
import socket
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from collector.model import MAX_TAG_NAME_LENGTH, MAX_TEXT_LENGTH, TagValue, split_value, to_utc
from collector.sinks.base import (
    ColumnSpec,
    PermanentSinkError,
    RowError,
    SinkError,
    TransientSinkError,
    WriteResult,
)
from collector.sinks.watchdog import Guard, Watchdog

if TYPE_CHECKING:
    from collector.config import PostgresSinkConfig

APPLICATION_NAME = "plc-tag-collector"
WATCHDOG_GRACE_S = 1.0
"""The client-side deadline is the statement timeout plus this, so the server's own timeout (a
clean, classified error that keeps the connection usable) fires first whenever the server answers."""

POOL_RECONNECT_GIVE_UP_S = 0.5
"""How long the pool keeps retrying a failed connection in the background (see __init__)."""

ROW_ERROR_CLASSES = frozenset({"22", "23"})
"""Data exceptions and integrity violations: the row is bad, not the batch or the database."""

TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58", "XX"})
"""Connection exception, transaction rollback, insufficient resources, operator intervention
(admin shutdown, cannot connect now, query cancelled by statement_timeout), system error, internal
error: the database may well accept the same batch a little later."""

TRANSIENT_STATES = frozenset({"55P03", "25P03", "25006"})
"""Lock not available, idle-in-transaction timeout, read-only transaction (a failover in
progress: the address will soon reach a writable primary again)."""

# libpq reports a failed login as text only (no SQLSTATE). These messages mean that retrying cannot
# help until an operator acts; the code given is the SQLSTATE the server sent with the message.
_LOGIN_REFUSALS = (
    (re.compile(r"password authentication failed|authentication failed for user"), "28P01"),
    (re.compile(r"role \".*\" does not exist|no pg_hba\.conf entry|not permitted to log in"), "28000"),
    (re.compile(r"database \".*\" does not exist"), "3D000"),
    (re.compile(r"permission denied for database"), "42501"),
)

# PostgreSQL's reserved key words (reserved, and reserved-but-can-be-function-or-type): a column
# or table with one of these names must be quoted.
_RESERVED = frozenset(
    """
    all analyse analyze and any array as asc asymmetric authorization binary both case cast check
    collate collation column concurrently constraint create cross current_catalog current_date
    current_role current_schema current_time current_timestamp current_user default deferrable desc
    distinct do else end except false fetch for foreign freeze from full grant group having ilike
    in initially inner intersect into is isnull join lateral leading left like limit localtime
    localtimestamp natural not notnull null offset on only or order outer overlaps placing primary
    references returning right select session_user similar some symmetric system_user table
    tablesample then to trailing true union unique user using variadic verbose when where window
    with
    """.split()  # noqa: SIM905 - a word list reads better as text
)
_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")


def identifier(name: str) -> str:
    """``name`` as PostgreSQL reads an unquoted name (folded to lower case, so the default
    ``TAG_DATA`` is ``tag_data``), quoted only when it must be; ``schema.table`` works too."""
    parts = []
    for part in name.split("."):
        folded = part.lower()
        if _PLAIN.match(folded) and folded not in _RESERVED:
            parts.append(folded)
        else:
            parts.append('"' + folded.replace('"', '""') + '"')
    return ".".join(parts)


def _sql_identifier(name: str) -> sql.Identifier:
    # The same object as identifier(name) names, always quoted: folded first, so "TAG_DATA"
    # and tag_data are one table, as they are for any PostgreSQL client.
    return sql.Identifier(*(part.lower() for part in name.split(".")))


def ddl(table: str = "TAG_DATA", columns: ColumnSpec | None = None) -> str:
    """The CREATE statements for the table and its timestamp index (FR-013 to FR-015)."""
    c = columns or ColumnSpec()
    name, value, text, stamp, quality = (identifier(n) for n in c.names())
    t = identifier(table)
    # An index lives in its table's schema, so its name is never qualified.
    index = identifier(f"{table.replace('.', '_')}_{c.timestamp}_ix")
    return (
        f"CREATE TABLE IF NOT EXISTS {t} (\n"
        f"    {name} VARCHAR({MAX_TAG_NAME_LENGTH}) NOT NULL CHECK ({name} <> ''),\n"
        f"    {value} NUMERIC,\n"
        f"    {text} VARCHAR({MAX_TEXT_LENGTH}),\n"
        f"    {stamp} TIMESTAMPTZ NOT NULL,\n"
        f"    {quality} VARCHAR(20) NOT NULL CHECK ({quality} IN ('GOOD', 'BAD')),\n"
        f"    PRIMARY KEY ({name}, {stamp})\n"
        f");\n"
        f"CREATE INDEX IF NOT EXISTS {index} ON {t} ({stamp});\n"
    )


def conninfo(config: PostgresSinkConfig) -> str:
    """The libpq connection string: ``dsn`` with the separately configured keys laid over it."""
    params: dict[str, Any] = {
        "host": config.host,
        "dbname": config.dbname,
        "user": config.user,
        "password": config.secret(),
        "application_name": config.application_name,
    }
    if config.host or "port" in config.model_fields_set:
        params["port"] = config.port
    return make_conninfo(config.dsn or "", **{k: v for k, v in params.items() if v is not None})


def from_config(config: PostgresSinkConfig) -> PostgresSink:
    return PostgresSink(
        conninfo(config),
        table=config.table,
        columns=ColumnSpec(**config.columns.model_dump()),
        pool_size=config.pool_size,
        connect_timeout_s=config.connect_timeout_s,
        call_timeout_s=config.call_timeout_s,
        pool_wait_timeout_s=config.pool_wait_timeout_s,
    )


PgRow = tuple[str, str | None, str | None, datetime, str]


class UnstorableTextError(ValueError):
    """Text PostgreSQL cannot store: a NUL character or a lone surrogate. Refused before sending,
    since psycopg would fail the whole batch while encoding it."""

    code = "22021"
    """character_not_in_repertoire, what the server says for such text."""


def pg_row(value: TagValue) -> PgRow:
    """The row for one value; numbers as their exact decimal text. Raises
    :class:`UnstorableTextError` for text PostgreSQL cannot store."""
    number, text = split_value(value.value)
    number_text = None if number is None else (repr(number) if type(number) is float else str(number))
    name = value.tag_name
    _check_text(name)
    if text is not None:
        _check_text(text)
    return (name, number_text, text, to_utc(value.timestamp), value.quality)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise UnstorableTextError("text contains a NUL character, which PostgreSQL cannot store")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise UnstorableTextError(f"text is not valid Unicode: {exc.reason}") from None


def is_row_error(exc: BaseException) -> bool:
    state: str | None = getattr(exc, "sqlstate", None)
    return state is not None and state[:2] in ROW_ERROR_CLASSES


def classify(exc: BaseException) -> SinkError:
    """The :class:`SinkError` a psycopg error means for the batch (see the module docstring)."""
    message = _message(exc)
    if isinstance(exc, PoolTimeout):
        return TransientSinkError(f"no pooled connection: {message}", code="POOL_TIMEOUT")
    state: str | None = getattr(exc, "sqlstate", None)
    if state:
        if state[:2] in TRANSIENT_CLASSES or state in TRANSIENT_STATES:
            return TransientSinkError(message, code=state)
        return PermanentSinkError(message, code=state)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        for pattern, code in _LOGIN_REFUSALS:
            if pattern.search(message):
                return PermanentSinkError(message, code=code)
        code = "08001" if "connection failed" in message or "timeout" in message else "08006"
        return TransientSinkError(message, code=code)
    return PermanentSinkError(message, code=type(exc).__name__)


def _row_error(index: int, exc: psycopg.Error) -> RowError:
    return RowError(index, getattr(exc, "sqlstate", None) or "22000", _message(exc))


def _message(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(exc)
    return " ".join(text.split())


def _shut_socket(conn: psycopg.Connection[Any]) -> Callable[[], None]:
    """An abort action for the watchdog: shut the connection's socket down. The blocked call then
    fails at once with a connection error; the pool discards the broken connection."""

    def abort() -> None:
        with suppress(OSError, psycopg.Error):
            fd = conn.pgconn.socket
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)

    return abort


class PostgresSink:
    """Writes batches into a PostgreSQL table through a pool of connections; thread-safe (each
    write uses its own pooled connection)."""

    system_name = "postgresql"

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "TAG_DATA",
        columns: ColumnSpec | None = None,
        pool_size: int = 5,
        connect_timeout_s: float = 5.0,
        call_timeout_s: float = 10.0,
        pool_wait_timeout_s: float = 5.0,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        self.table = table
        self._columns = columns or ColumnSpec()
        self._dsn = dsn
        self._pool_wait_timeout_s = pool_wait_timeout_s
        self._deadline_s = call_timeout_s + WATCHDOG_GRACE_S
        statement_ms = max(1, round(call_timeout_s * 1000))
        given = conninfo_to_dict(dsn).get("options")
        settings = [
            f"-c statement_timeout={statement_ms}",
            # A client that vanished mid-transaction must not hold its row locks for long.
            f"-c idle_in_transaction_session_timeout={2 * statement_ms}",
            "-c TimeZone=UTC",
        ]
        options = " ".join([str(given), *settings] if given else settings)
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            # libpq takes whole seconds and enforces at least 2.
            "connect_timeout": max(2, math.ceil(connect_timeout_s)),
            "options": options,
        }
        if "application_name" not in conninfo_to_dict(dsn):
            self._connect_kwargs["application_name"] = APPLICATION_NAME
        self._insert = self._insert_statement()
        self._probe = sql.SQL("EXPLAIN ") + self._insert
        self._watchdog = Watchdog("postgresql-watchdog")
        self._degraded = False
        self._close_lock = threading.Lock()
        self._closed = False
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn,
            kwargs=self._connect_kwargs,
            min_size=pool_size,
            max_size=pool_size,
            open=False,
            name="collector-postgresql",
            timeout=pool_wait_timeout_s,
            # The pool retries a failed connection in the background with a growing backoff, and a
            # slot waiting out that backoff cannot serve anyone even after the server is back.
            # Giving up almost at once frees the slot; the next getconn then starts a fresh
            # attempt immediately. While the server is down the circuit keeps writers away.
            reconnect_timeout=min(POOL_RECONNECT_GIVE_UP_S, pool_wait_timeout_s / 2),
        )
        # Opens without waiting: the pool connects in the background, so a server that is down
        # now is an outage like any other, not a start-up failure.
        self._pool.open(wait=False)

    def _insert_statement(self) -> sql.Composed:
        c = self._columns
        names = sql.SQL(", ").join(_sql_identifier(n) for n in c.names())
        key = sql.SQL(", ").join(_sql_identifier(n) for n in (c.tag_name, c.timestamp))
        # Binary parameters (%b): psycopg dumps a 500-element array several times faster in
        # binary than as text. Numbers still travel as decimal text, cast to numeric by the server.
        return sql.SQL(
            "INSERT INTO {table} ({names}) "
            "SELECT * FROM unnest(%b::text[], %b::numeric[], %b::text[], %b::timestamptz[], %b::text[]) "
            "ON CONFLICT ({key}) DO NOTHING"
        ).format(table=_sql_identifier(self.table), names=names, key=key)

    # ------------------------------------------------------------------ writing

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        result = WriteResult()
        rows: list[PgRow] = []
        positions: list[int] = []
        for index, value in enumerate(batch):
            try:
                rows.append(pg_row(value))
            except UnstorableTextError as exc:
                result.rejected.append(RowError(index, exc.code, str(exc)))
                continue
            except (TypeError, ValueError, AttributeError) as exc:
                result.rejected.append(RowError(index, "INVALID", str(exc)))
                continue
            positions.append(index)
        if not rows:
            return result
        conn = self._getconn()
        guard: Guard | None = None
        try:
            with self._watchdog.guard(self._deadline_s, _shut_socket(conn)) as guard:
                try:
                    written = self._execute(conn, rows)
                except psycopg.Error as exc:
                    if not is_row_error(exc):
                        raise
                    written = self._isolate(conn, rows, positions, result, exc)
        except psycopg.Error as exc:
            raise self._failure(exc, guard) from exc
        finally:
            self._pool.putconn(conn)
        result.rejected.sort(key=lambda error: error.index)
        refused_by_server = len(result.rejected) - (len(batch) - len(rows))
        result.written = written
        result.duplicates = len(rows) - written - refused_by_server
        return result

    def _getconn(self) -> psycopg.Connection[Any]:
        try:
            return self._pool.getconn(timeout=self._pool_wait_timeout_s)
        except psycopg.Error as exc:  # PoolTimeout, PoolClosed
            self._degraded = True
            raise classify(exc) from exc

    def _execute(self, conn: psycopg.Connection[Any], rows: Sequence[PgRow]) -> int:
        columns = [list(column) for column in zip(*rows, strict=True)]
        return conn.execute(self._insert, columns).rowcount

    def _isolate(
        self,
        conn: psycopg.Connection[Any],
        rows: list[PgRow],
        positions: list[int],
        result: WriteResult,
        first_error: psycopg.Error,
    ) -> int:
        """Write the batch again in one transaction, halving it under savepoints until every bad
        row stands alone; the good rows commit together, each bad one is reported with its
        SQLSTATE. A batch with k bad rows takes about 2k·log2(n) statements."""
        if len(rows) == 1:
            result.rejected.append(_row_error(positions[0], first_error))
            return 0
        written = 0
        mark = len(result.rejected)
        middle = len(rows) // 2
        try:
            with conn.transaction():
                pending = [(middle, len(rows)), (0, middle)]
                while pending:
                    low, high = pending.pop()
                    try:
                        with conn.transaction():
                            written += self._execute(conn, rows[low:high])
                    except psycopg.Error as exc:
                        if not is_row_error(exc):
                            raise
                        if high - low == 1:
                            result.rejected.append(_row_error(positions[low], exc))
                        else:
                            middle = (low + high) // 2
                            pending.extend(((middle, high), (low, middle)))
        except BaseException:
            del result.rejected[mark:]
            raise
        return written

    def _failure(self, exc: psycopg.Error, guard: Guard | None) -> SinkError:
        if guard is not None and guard.fired:
            self._degraded = True
            return TransientSinkError(
                f"no answer within {self._deadline_s:g} s; connection abandoned", code="CALL_TIMEOUT"
            )
        error = classify(exc)
        if error.transient:
            self._degraded = True
        return error

    # ------------------------------------------------------------------ health

    def ping(self) -> None:
        """Connect afresh and plan (EXPLAIN, nothing is written) the insert with empty arrays:
        that checks the server, the login, the table, every column, the unique key and the SELECT
        and INSERT privileges. After a failure, a successful ping also replaces the pool's idle
        connections."""
        try:
            conn = psycopg.connect(self._dsn, **self._connect_kwargs)
        except psycopg.Error as exc:
            self._degraded = True
            raise classify(exc) from exc
        guard: Guard | None = None
        try:
            with self._watchdog.guard(self._deadline_s, _shut_socket(conn)) as guard:
                conn.execute(self._probe, [[], [], [], [], []])
        except psycopg.Error as exc:
            raise self._failure(exc, guard) from exc
        finally:
            conn.close()
        if self._degraded:
            self._degraded = False
            # Connections idle in the pool since before the outage are most likely dead (a server
            # restart closed them); drop them now rather than fail a batch on each.
            self._pool.drain()

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        # A pool worker may be inside a connection attempt; it gives up within connect_timeout.
        self._pool.close(timeout=self._connect_kwargs["connect_timeout"] + 1.0)
        self._watchdog.close()
