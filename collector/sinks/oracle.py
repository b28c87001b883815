"""Oracle sink: python-oracledb in thin mode (FR-006), a fixed pool of 5 (FR-007), one
``executemany`` per batch (FR-008) with batch errors, and an explicit commit.

Binding traps the sink avoids, each with a test against the driver double:

- a ``datetime`` binds as DATE unless told otherwise, silently dropping the microseconds (and
  folding readings of one second into duplicates): the timestamp is declared TIMESTAMP with
  ``setinputsizes`` and bound as naive UTC, since thin mode ignores ``tzinfo``;
- the driver refuses NaN, infinities and numbers beyond NUMBER's range on the client, which fails
  the whole call whether batch errors are on or not: such values are routed before binding (to
  the text column, or rejected with the reason when the table has none);
- one bind column cannot mix numbers and strings: numbers and text have their own columns and
  each is declared with its type; booleans are 1/0.

The pool is created on first use, so the sink can be built while the database is down (the
service then starts with the circuit open and probes). Connections that the driver reports dead
are dropped from the pool instead of being handed to the next batch. Every call has a deadline:
``tcp_connect_timeout`` for new connections, ``call_timeout`` for each round trip, and the pool
wait for a free connection.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import oracledb
from opentelemetry import trace

from collector.logs import log_event
from collector.model import MAX_TAG_NAME_LENGTH, MAX_TEXT_LENGTH, TagValue, split_value, to_utc
from collector.sinks.base import (
    ColumnSpec,
    PermanentSinkError,
    RowError,
    SinkError,
    TransientSinkError,
    WriteResult,
)
from collector.sinks.oracle_errors import (
    MAX_BATCH_ERRORS,
    Disposition,
    OracleFailure,
    as_error_object,
    classify_exception,
    classify_row_error,
)
from collector.sinks.oracle_schema import (
    IDENTITY_ATTRIBUTES,
    IDENTITY_QUERY,
    QUALITY_LENGTH,
    ColumnInfo,
    TableLayout,
    TableName,
    TextLimit,
    ValueMode,
    check_columns,
    ddl,
    dictionary_query,
)
from collector.sinks.spans import SpanFailure, insert_span, record_result, sink_error_failure

__all__ = ["OracleSink", "StaleSessionError", "bind_rows", "ddl"]

log = logging.getLogger("collector.sinks.oracle")

NO_TEXT_COLUMN = "NO_TEXT_COLUMN"
INVALID = "INVALID"
VALUE_TOO_LARGE = "ORA-12899"
"""The code of a value over its column's length, refused before sending: what Oracle would say."""


def _server_of(dsn: str) -> tuple[str | None, int | None, str | None]:
    """Host, port and service of an Easy Connect string (``host[:port]/service``), for the span."""
    match = re.match(r"^(?:\w+://)?([\w.\-]+)(?::(\d+))?/([\w.\-$#]+)", dsn.strip())
    if match is None:
        return None, None, None
    host, port, service = match.groups()
    return host, int(port) if port else None, service


def bind_rows(
    batch: Sequence[TagValue], layout: TableLayout, rejected: list[RowError]
) -> tuple[list[tuple[object, ...]], list[int]]:
    """The bind rows for ``batch`` in ``layout``'s column order, and each row's index in the batch.

    Values that cannot be bound without the driver refusing the whole call, or that the table
    cannot hold, are appended to ``rejected`` with the reason instead.
    """
    rows: list[tuple[object, ...]] = []
    positions: list[int] = []
    mode = layout.mode
    checked = [(position, limit.safe_length, limit) for position, limit in layout.checked_binds()]
    for index, value in enumerate(batch):
        try:
            number, text = split_value(value.value)
            # Thin mode ignores tzinfo: bind the UTC wall-clock time, naive.
            stamp = to_utc(value.timestamp).replace(tzinfo=None)
        except (TypeError, ValueError, AttributeError) as exc:
            rejected.append(RowError(index, INVALID, str(exc)))
            continue
        if mode is ValueMode.SPLIT:
            row: tuple[object, ...] = (value.tag_name, number, text, stamp, str(value.quality))
        elif mode is ValueMode.TEXT_ONLY:
            spelled = text if number is None else _spell(number)
            row = (value.tag_name, spelled, stamp, str(value.quality))
        else:
            if text is not None:
                rejected.append(
                    RowError(
                        index,
                        NO_TEXT_COLUMN,
                        f"table {layout.table} has no text column for the value {text[:100]!r}",
                    )
                )
                continue
            row = (value.tag_name, number, stamp, str(value.quality))
        refusal = _too_long(row, checked)
        if refusal is not None:
            rejected.append(RowError(index, VALUE_TOO_LARGE, refusal))
            continue
        rows.append(row)
        positions.append(index)
    return rows, positions


def _too_long(row: tuple[object, ...], checked: list[tuple[int, int, TextLimit]]) -> str | None:
    for position, safe, limit in checked:
        text = row[position]
        # Most text is short: only text longer than the column's safe length is measured.
        if isinstance(text, str) and len(text) > safe:
            refusal = limit.refusal(text)
            if refusal is not None:
                return refusal
    return None


def _spell(number: int | float) -> str:
    return repr(number) if type(number) is float else str(number)


class OracleSink:
    """Writes batches to an Oracle table through a python-oracledb connection pool.

    ``driver`` is the module that provides ``create_pool`` (python-oracledb itself unless a test
    passes its double); ``tracer`` defaults to ``trace.get_tracer(__name__)``. Safe to call from
    several writer threads at once: each write holds its own pooled connection.
    """

    system_name = "oracle.db"

    def __init__(
        self,
        *,
        dsn: str,
        user: str,
        password: str | Callable[[], str],
        table: str = "TAG_DATA",
        columns: ColumnSpec | None = None,
        pool_size: int = 5,
        connect_timeout_s: float = 5.0,
        call_timeout_s: float = 10.0,
        pool_wait_timeout_s: float = 5.0,
        driver: Any = None,
        tracer: trace.Tracer | None = None,
        server_address: str | None = None,
        server_port: int | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        self.table = table
        self._target = TableName.parse(table)
        self._columns = columns or ColumnSpec()
        for name in self._columns.names():
            TableName.parse(name)  # validates each column name as an identifier
        self._dsn = dsn
        self._user = user
        # A callable is read again for every new pool: a password file that changes is used.
        self._password: Callable[[], str] = password if callable(password) else (lambda: password)
        self._login_refused = False
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._call_timeout_ms = max(1, round(call_timeout_s * 1000))
        self._pool_wait_ms = max(1, round(pool_wait_timeout_s * 1000))
        self._driver: Any = driver if driver is not None else oracledb
        self._tracer = tracer if tracer is not None else trace.get_tracer(__name__)
        # Known from the configuration; the database's own names (db.namespace is its
        # DB_UNIQUE_NAME) are added once the schema check has read them.
        parsed_address, parsed_port, parsed_service = _server_of(dsn)
        self._span_attributes: dict[str, str | int] = {
            key: value
            for key, value in (
                ("server.address", server_address or parsed_address),
                ("server.port", server_port or parsed_port),
                ("oracle.db.service", parsed_service),
            )
            if value
        }
        self._lock = threading.Lock()
        self._pool: Any = None
        self._closed = False
        self._layout: TableLayout | None = None

    # ------------------------------------------------------------------ connections

    def _get_pool(self) -> Any:
        with self._lock:
            if self._closed:
                raise TransientSinkError("the Oracle sink is closed", code="DPY-1002")
            if self._pool is None:
                password = self._password()
                # One login first, standalone: a pool opening its connections with credentials
                # the database refuses could spend several logins at once, each counting towards
                # the account's lock. Only credentials that work get a pool.
                self._check_login(password)
                try:
                    self._pool = self._driver.create_pool(
                        user=self._user,
                        password=password,
                        dsn=self._dsn,
                        min=self._pool_size,
                        max=self._pool_size,
                        increment=1,
                        getmode=oracledb.POOL_GETMODE_TIMEDWAIT,
                        wait_timeout=self._pool_wait_ms,
                        tcp_connect_timeout=self._connect_timeout_s,
                    )
                except oracledb.Error as exc:
                    raise self._sink_error(classify_exception(exc)) from exc
            return self._pool

    def _check_login(self, password: str) -> None:
        try:
            conn = self._driver.connect(
                user=self._user, password=password, dsn=self._dsn, tcp_connect_timeout=self._connect_timeout_s
            )
        except oracledb.Error as exc:
            raise self._sink_error(classify_exception(exc)) from exc
        _quietly(conn.close)
        self._login_refused = False

    def _drop_pool(self) -> None:
        """Close the pool now: with credentials the database refuses, a pool left open could keep
        trying to log in in the background, and every refused login counts towards a lock."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            _quietly(lambda: pool.close(force=True))

    @contextmanager
    def _session(self) -> Iterator[Any]:
        """A pooled connection with the call timeout set; on an error the transaction is rolled
        back, a dead session is dropped from the pool, and the error is raised as a SinkError."""
        pool = self._get_pool()
        try:
            conn = pool.acquire()
        except oracledb.Error as exc:
            raise self._failed(exc) from exc
        dead = False
        try:
            # Set on every acquire: some driver versions reset it after an idle ping.
            conn.call_timeout = self._call_timeout_ms
            yield conn
        except (oracledb.Error, _BatchAborted) as exc:
            failure = exc.failure if isinstance(exc, _BatchAborted) else classify_exception(exc)
            dead = failure.session_dead
            if not dead:
                _quietly(conn.rollback)
            raise self._sink_error(failure) from exc
        except BaseException:
            _quietly(conn.rollback)
            raise
        finally:
            if dead:
                _quietly(lambda: pool.drop(conn))
            else:
                _quietly(lambda: pool.release(conn))
            if self._login_refused:
                self._drop_pool()

    def _failed(self, exc: BaseException) -> SinkError:
        """The SinkError for a failed acquire (never called with the lock held)."""
        error = self._sink_error(classify_exception(exc))
        if self._login_refused:
            self._drop_pool()
        return error

    def _sink_error(self, failure: OracleFailure) -> SinkError:
        if failure.disposition is Disposition.PERMANENT:
            # The schema or the grants may have changed: read the dictionary again next time.
            self._layout = None
        if failure.credentials:
            self._login_refused = True
        if failure.session_dead and failure.driver_code in _STALE_SESSION_CODES:
            return StaleSessionError(failure.message, code=failure.code)
        return failure.sink_error()

    # ------------------------------------------------------------------ schema

    def _read_layout(self, conn: Any) -> TableLayout:
        sql, binds = dictionary_query(self._target)
        cursor = conn.cursor()
        try:
            cursor.execute(sql, binds)
            infos = [ColumnInfo.from_row(row) for row in cursor.fetchall()]
            layout = check_columns(self.table, self._columns, infos)
            # Parsing the exact INSERT catches what the dictionary does not show: a missing
            # INSERT grant, a column the user cannot see.
            cursor.parse(layout.insert_sql)
            self._read_identity(cursor)
        finally:
            _quietly(cursor.close)
        if layout != self._layout:
            for warning in layout.warnings:
                log_event(log, logging.WARNING, "oracle_table_warning", warning, table=str(self._target))
            log_event(
                log,
                logging.INFO,
                "oracle_table_checked",
                "target table checked",
                table=str(self._target),
                mode=layout.mode.value,
                columns=",".join(layout.columns),
            )
        self._layout = layout
        return layout

    def _read_identity(self, cursor: Any) -> None:
        """The database's names for the span (``db.namespace`` is DB_UNIQUE_NAME, as the Oracle
        conventions ask), read with the schema check rather than on every batch."""
        try:
            cursor.execute(IDENTITY_QUERY)
            row = cursor.fetchone()
        except oracledb.Error as exc:
            log.debug("database identity not readable: %s", exc)
            return
        if row is None:
            return
        for key, value in zip(IDENTITY_ATTRIBUTES, row, strict=True):
            if value:
                self._span_attributes[key] = str(value)

    def _current_layout(self, conn: Any) -> TableLayout:
        layout = self._layout
        return layout if layout is not None else self._read_layout(conn)

    @property
    def layout(self) -> TableLayout | None:
        """The layout the last check found (None before the first check or after a permanent
        error); the status API and tests read it."""
        return self._layout

    # ------------------------------------------------------------------ the Sink protocol

    def ping(self) -> None:
        """Reachable, logged in, and the table has the columns the collector writes."""
        with self._session() as conn:
            try:
                self._read_layout(conn)
            except PermanentSinkError:
                self._layout = None
                raise

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        # A pooled session can be dead without the pool knowing (the database restarted, the
        # session was killed): that costs one quick error, so try the next session at once
        # rather than spend one of the writer's retries (and seconds of backoff) on each.
        stale_left = self._pool_size
        while True:
            try:
                return self._write_once(batch)
            except StaleSessionError:
                if stale_left == 0:
                    raise
                stale_left -= 1

    def _write_once(self, batch: Sequence[TagValue]) -> WriteResult:
        result = WriteResult()
        if not batch:
            return result
        with self._session() as conn:
            layout = self._current_layout(conn)
            rows, positions = bind_rows(batch, layout, result.rejected)
            if rows:
                self._insert(conn, layout, rows, positions, result)
        return result

    def _insert(
        self,
        conn: Any,
        layout: TableLayout,
        rows: list[tuple[object, ...]],
        positions: list[int],
        result: WriteResult,
    ) -> None:
        with insert_span(
            self._tracer,
            system=self.system_name,
            table=str(self._target),
            parameter_sets=len(rows),
            attributes=self._span_attributes,
            failure_of=_span_failure,
        ) as span:
            duplicates, refused = self._execute(conn, layout, rows, positions)
            result.duplicates = duplicates
            result.rejected.extend(refused)
            result.rejected.sort(key=lambda error: error.index)
            result.written = len(rows) - duplicates - len(refused)
            record_result(span, result)

    def _execute(
        self, conn: Any, layout: TableLayout, rows: list[tuple[object, ...]], positions: list[int]
    ) -> tuple[int, list[RowError]]:
        """executemany with batch errors, then one commit. Returns the duplicates and the rows the
        database refused; raises (after rolling back) if a batch error says the database, not the
        row, is in trouble, so that nothing is committed piecemeal.

        One executemany reports at most :data:`MAX_BATCH_ERRORS` batch errors (python-oracledb
        raises DPY-4029 beyond that), so a larger batch goes in slices of that many rows, all in
        the one transaction."""
        duplicates = 0
        refused: list[RowError] = []
        cursor = conn.cursor()
        try:
            for start in range(0, len(rows), MAX_BATCH_ERRORS):
                cursor.setinputsizes(*(_INPUT_SIZES[kind] for kind in layout.binds))
                cursor.executemany(
                    layout.insert_sql, rows[start : start + MAX_BATCH_ERRORS], batcherrors=True
                )
                for raw in cursor.getbatcherrors():
                    error = as_error_object(raw)
                    failure = classify_row_error(error)
                    if failure.disposition is Disposition.DUPLICATE:
                        duplicates += 1
                    elif failure.disposition is Disposition.REJECT:
                        refused.append(
                            RowError(positions[start + error.offset], failure.code, failure.message)
                        )
                    else:
                        raise _BatchAborted(failure)
        finally:
            _quietly(cursor.close)
        conn.commit()
        return duplicates, refused

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._closed = True
        if pool is not None:
            _quietly(lambda: pool.close(force=True))


class StaleSessionError(TransientSinkError):
    """The pooled session was already dead (closed by the database or the network); another
    session may well be alive. A call that timed out is not one of these: it says the database
    or the network is not answering, and trying again at once would only wait again."""


_STALE_SESSION_CODES = frozenset({"DPY-4011", "DPY-1001"})


class _BatchAborted(Exception):
    """A batch error said the database, not the row, is in trouble: roll the batch back."""

    def __init__(self, failure: OracleFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


_INPUT_SIZES: dict[str, object] = {
    "name": MAX_TAG_NAME_LENGTH,
    "number": oracledb.DB_TYPE_NUMBER,
    "text": MAX_TEXT_LENGTH,
    "timestamp": oracledb.DB_TYPE_TIMESTAMP,
    "quality": QUALITY_LENGTH,
}
"""``setinputsizes`` per bind kind: an int is a VARCHAR2 of that many characters; NUMBER and
TIMESTAMP are declared so that a batch whose first values are None still binds the right type,
and so that a datetime is never sent as DATE."""


def _span_failure(exc: BaseException) -> SpanFailure | None:
    """An Oracle failure as the span records it: the ORA- code is ``db.response.status_code``;
    a driver-only code (DPY-) is ``error.type`` alone."""
    if isinstance(exc, _BatchAborted):
        failure = exc.failure
    elif isinstance(exc, oracledb.Error):
        failure = classify_exception(exc)
    else:
        return sink_error_failure(exc)
    return SpanFailure(
        error_type=failure.code,
        status_code=failure.code if failure.from_database else None,
        message=failure.message,
        disposition=failure.disposition.value,
    )


def _quietly(action: Any) -> None:
    """Run a clean-up step whose failure must not hide the error being raised."""
    try:
        action()
    except Exception:
        log.debug("clean-up step failed", exc_info=True)
