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

How errors are sorted is :mod:`collector.sinks.postgresql_errors`; the DDL and the statement,
:mod:`collector.sinks.postgresql_schema`; connection settings and the client-side deadline, shared
with the key lookup (:mod:`collector.sinks.postgresql_lookup`), :mod:`collector.sinks.postgresql_session`.
Every wait is bounded: ``connect_timeout_s`` for a new connection, ``pool_wait_timeout_s`` for a
pooled one (the pool's getconn blocks while the server is down), ``call_timeout_s`` as the
statement timeout and, a second later, as the client-side deadline.

The sink can be built while the server is down: the pool fills in the background. ``ping`` does
not use the pool: it opens its own connection, so it reports why the server refuses (wrong
password, unknown database) rather than a pool timeout, and so it works while every pooled
connection is busy. After a failure, a successful ping replaces the pool's idle connections,
which a server restart has made stale.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from opentelemetry import trace
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from collector.model import TagValue, split_value, to_utc
from collector.sinks.base import ColumnSpec, RowError, SinkError, WriteResult
from collector.sinks.postgresql_errors import classify, is_row_error, row_error
from collector.sinks.postgresql_schema import ddl, identifier, insert_statement
from collector.sinks.postgresql_session import CallDeadline, connect_kwargs, statement_timeout_ms
from collector.sinks.spans import insert_span, record_result
from collector.sinks.watchdog import Guard

__all__ = ["PgRow", "PostgresSink", "UnstorableTextError", "ddl", "pg_columns", "pg_row"]

DEFAULT_PORT = 5432

POOL_RECONNECT_GIVE_UP_S = 0.5
"""How long the pool keeps retrying a failed connection in the background (see __init__)."""


PgRow = tuple[str, str | None, str | None, datetime, str]


class UnstorableTextError(ValueError):
    """Text PostgreSQL cannot store: a NUL character or a lone surrogate. Refused before sending,
    since psycopg would fail the whole batch while encoding it."""

    code = "22021"
    """character_not_in_repertoire, what the server says for such text."""


def span_attributes(dsn: str, table: str) -> dict[str, str | int]:
    """The span attributes known from the configuration, as the PostgreSQL conventions ask:
    ``server.address`` as configured, ``server.port`` when not the default 5432, ``db.namespace``
    as ``{database}|{schema}`` (the database alone when the table names no schema, since the
    session's search path is not known without a query)."""
    params = conninfo_to_dict(dsn)
    attributes: dict[str, str | int] = {}
    host = str(params.get("host") or "")
    if host and "," not in host:
        attributes["server.address"] = host
        port = str(params.get("port") or "")
        if port.isdigit() and int(port) != DEFAULT_PORT:
            attributes["server.port"] = int(port)
    database = str(params.get("dbname") or params.get("user") or "")
    schema = table.lower().split(".")[0] if "." in table else ""
    namespace = "|".join(part for part in (database, schema) if part)
    if namespace:
        attributes["db.namespace"] = namespace
    return attributes


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


def pg_columns(batch: Sequence[TagValue]) -> tuple[list[list[Any]], list[int], list[RowError]]:
    """The five columns of a whole batch (as :func:`pg_row` makes each row, column by column),
    the batch index of each row in them, and the rows refused before sending.

    Built with C-level maps over the columns: every value is spelled by ``repr`` and only those
    that are not an ordinary float go through :func:`split_value` one by one; the names and texts
    are checked for what PostgreSQL cannot store in one pass over all of them, and one by one only
    when that pass finds something; each distinct timestamp is converted once. The writers convert
    every row the database takes while sharing the interpreter with intake (and replay with its
    reading), so this is time taken from the database's own rate (docs/benchmarks.md).
    """
    if not batch:
        return [[], [], [], [], []], [], []
    names, values, stamps, qualities = zip(*batch, strict=True)
    try:
        numbers: list[str | None] = list(map(repr, values))
    except ValueError:  # an integer too long to spell: refused below, one by one
        numbers = [repr(v) if type(v) is float else None for v in values]
    texts: list[str | None] = [None] * len(values)
    refused: dict[int, RowError] = {}
    for index in [i for i, v in enumerate(values) if type(v) is not float or not 1e-130 <= abs(v) < 1e126]:
        try:
            number, text = split_value(values[index])
        except (TypeError, ValueError) as exc:
            refused[index] = RowError(index, "INVALID", str(exc))
            continue
        numbers[index] = None if number is None else (repr(number) if type(number) is float else str(number))
        texts[index] = text
    for column in (names, texts):
        joined = "".join(text for text in column if text is not None)
        if "\x00" in joined or not _storable(joined):
            for index, text in enumerate(column):
                if text is not None and index not in refused:
                    try:
                        _check_text(text)
                    except UnstorableTextError as exc:
                        refused[index] = RowError(index, exc.code, str(exc))
    utc = {stamp: to_utc(stamp) for stamp in set(stamps)}
    columns: list[list[Any]] = [
        list(names),
        numbers,
        texts,
        list(map(utc.__getitem__, stamps)),
        list(qualities),
    ]
    if not refused:
        return columns, list(range(len(values))), []
    kept = [index for index in range(len(values)) if index not in refused]
    return (
        [[column[index] for index in kept] for column in columns],
        kept,
        [refused[index] for index in sorted(refused)],
    )


def _storable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise UnstorableTextError("text contains a NUL character, which PostgreSQL cannot store")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise UnstorableTextError(f"text is not valid Unicode: {exc.reason}") from None


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
        tracer: trace.Tracer | None = None,
        password: Callable[[], str | None] | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        self.table = table
        self._tracer = tracer if tracer is not None else trace.get_tracer(__name__)
        self._collection = identifier(table).replace('"', "")
        self._span_attributes = span_attributes(dsn, table)
        self._columns = columns or ColumnSpec()
        self._dsn = dsn
        self._pool_wait_timeout_s = pool_wait_timeout_s
        self._connect_kwargs = connect_kwargs(
            dsn,
            connect_timeout_s=connect_timeout_s,
            call_timeout_s=call_timeout_s,
            # A client that vanished mid-transaction must not hold its row locks for long.
            settings=[f"-c idle_in_transaction_session_timeout={2 * statement_timeout_ms(call_timeout_s)}"],
        )
        self._deadline = CallDeadline(call_timeout_s, thread_name="postgresql-watchdog")
        self._insert = insert_statement(table, self._columns)
        self._probe = sql.SQL("EXPLAIN ") + self._insert
        self._degraded = False
        self._close_lock = threading.Lock()
        self._closed = False
        # A password source (a password file) is read for every new connection, so a corrected
        # file is used without a restart; it overrides a password in the DSN.
        self._password = password
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn,
            kwargs=self._session_kwargs if password is not None else self._connect_kwargs,
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

    # ------------------------------------------------------------------ writing

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        result = WriteResult()
        columns, positions, result.rejected = pg_columns(batch)
        if not positions:
            return result
        # One statement takes every row as operands: for the conventions that is an INSERT, not
        # a batch of operations (the isolation of bad rows, when needed, runs inside the span).
        with insert_span(
            self._tracer,
            system=self.system_name,
            table=self._collection,
            parameter_sets=1,
            attributes=self._span_attributes,
        ) as span:
            conn = self._getconn()
            guard: Guard | None = None
            try:
                with self._deadline.guard(conn) as guard:
                    try:
                        written = conn.execute(self._insert, columns).rowcount
                    except psycopg.Error as exc:
                        if not is_row_error(exc):
                            raise
                        rows: list[PgRow] = list(zip(*columns, strict=True))
                        written = self._isolate(conn, rows, positions, result, exc)
            except psycopg.Error as exc:
                raise self._failure(exc, guard) from exc
            finally:
                self._pool.putconn(conn)
            result.rejected.sort(key=lambda error: error.index)
            refused_by_server = len(result.rejected) - (len(batch) - len(positions))
            result.written = written
            result.duplicates = len(positions) - written - refused_by_server
            record_result(span, result)
        return result

    def _session_kwargs(self) -> dict[str, Any]:
        password = self._password() if self._password is not None else None
        return self._connect_kwargs if password is None else {**self._connect_kwargs, "password": password}

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
            result.rejected.append(row_error(positions[0], first_error))
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
                            result.rejected.append(row_error(positions[low], exc))
                        else:
                            middle = (low + high) // 2
                            pending.extend(((middle, high), (low, middle)))
        except BaseException:
            del result.rejected[mark:]
            raise
        return written

    def _failure(self, exc: psycopg.Error, guard: Guard | None) -> SinkError:
        error = self._deadline.error(exc, guard)
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
            conn = psycopg.connect(self._dsn, **self._session_kwargs())
        except psycopg.Error as exc:
            self._degraded = True
            raise classify(exc) from exc
        guard: Guard | None = None
        try:
            with self._deadline.guard(conn) as guard:
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
        self._deadline.close()
