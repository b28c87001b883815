"""A double of the python-oracledb surface the Oracle sink uses, faithful where the sink could go wrong.

Oracle cannot run on the development machines, so every change to the Oracle path is checked
against this double. It is a small in-memory Oracle behind the same calls the sink makes
(``create_pool``, ``pool.acquire/release/drop/close``, ``connection.cursor/commit/rollback``,
``call_timeout``, ``cursor.setinputsizes/executemany/getbatcherrors/execute/fetchall/parse``), and it
fails the way python-oracledb fails: with the driver's own exception classes built from the
driver's own error objects (``oracledb.errors._Error``), so ``full_code``, ``code``, ``offset``,
``isrecoverable`` and ``is_session_dead`` are the real ones.

What it reproduces, because the sink has to get it right:

- the client-side bind rules of python-oracledb: a bind variable takes its type from
  ``setinputsizes`` or from its first non-None value (a ``datetime`` becomes DATE, which drops the
  microseconds); a later value of another type fails the whole call with DPY-3013; NaN, infinities
  and numbers beyond NUMBER's range fail the whole call with DPY-4004/DPY-4003, batch errors or not;
  ``tzinfo`` is ignored;
- the server: tables created from the DDL the collector prints, the primary key (ORA-00001), NOT NULL
  (ORA-01400), column sizes (ORA-12899), NUMBER precision (ORA-01438), CHECK constraints
  (ORA-02290), missing tables and columns (ORA-00942, ORA-00904), missing grants (ORA-01031),
  Oracle's empty string being NULL, transactions per session, and ``executemany`` with batch errors
  and offsets;
- the network and the instance: a database that is down (DPY-6005 on connect, DPY-4011 on open
  sessions), starting (ORA-01033), killed sessions (ORA-00028 inside DPY-4011), a call that hangs
  until ``call_timeout`` (DPY-4024; with no call timeout the double fails the test instead of
  hanging), a pool with no free connection (DPY-4005 after ``wait_timeout``), wrong credentials
  (ORA-01017), and any error injected at a chosen operation, before or after it takes effect (a
  commit whose acknowledgement is lost).

It is not a SQL engine: it understands the statements the sink sends (an INSERT with positional
binds, the data-dictionary query, the DDL) and answers anything else with ORA-00900.
"""

from __future__ import annotations

import datetime as dt
import inspect
import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import oracledb
from oracledb import errors as driver_errors

# ---------------------------------------------------------------------- errors, the driver's way


def server_error(code: int, text: str, *, offset: int = 0) -> oracledb.Error:
    """An exception for an Oracle server error, built as python-oracledb builds it."""
    error = driver_errors._Error(f"ORA-{code:05d}: {text}", code=code, offset=offset)
    exc: oracledb.Error = error.exc_type(error)
    return exc


def batch_error(code: int, text: str, offset: int) -> Any:
    """An entry of ``cursor.getbatcherrors()``: the driver's error object, not an exception."""
    return driver_errors._Error(f"ORA-{code:05d}: {text}", code=code, offset=offset)


def driver_error(number: int, context: str | None = None, **args: object) -> oracledb.Error:
    """An exception for a python-oracledb (DPY) error, built by the driver's own factory."""
    exc: oracledb.Error = driver_errors._create_exception(number, context, **args)
    return exc


def connection_refused() -> oracledb.Error:
    return driver_error(
        driver_errors.ERR_CONNECTION_FAILED, "[Errno 111] Connection refused", connection_id="double"
    )


def connection_lost() -> oracledb.Error:
    return driver_error(driver_errors.ERR_CONNECTION_CLOSED, "[Errno 104] Connection reset by peer")


def session_killed() -> oracledb.Error:
    return server_error(28, "your session has been killed")


def instance_shutting_down() -> oracledb.Error:
    return server_error(1089, "immediate shutdown or close in progress - no operations are permitted")


def instance_starting() -> oracledb.Error:
    return server_error(1033, "ORACLE initialization or shutdown in progress")


def invalid_login() -> oracledb.Error:
    return server_error(1017, "invalid credential or not authorized; logon denied")


class WouldHangError(AssertionError):
    """The sink made a call with no call timeout while the database hangs: in production that call
    would block for as long as the network takes to give up (many minutes)."""


# ---------------------------------------------------------------------- the schema


@dataclass
class Column:
    name: str
    data_type: str
    """VARCHAR2, NVARCHAR2, CHAR, NUMBER, FLOAT, DATE, TIMESTAMP, TIMESTAMP WITH TIME ZONE, ..."""
    length: int | None = None
    char_semantics: bool = False
    precision: int | None = None
    scale: int | None = None
    """NUMBER scale, or the fractional-second digits of a TIMESTAMP."""
    nullable: bool = True
    default: str | None = None

    @property
    def dictionary_type(self) -> str:
        """DATA_TYPE as USER_TAB_COLUMNS shows it."""
        if self.data_type.startswith("TIMESTAMP"):
            suffix = self.data_type[len("TIMESTAMP") :]
            return f"TIMESTAMP({self.scale if self.scale is not None else 6}){suffix}"
        return self.data_type

    @property
    def is_text(self) -> bool:
        return self.data_type in {"VARCHAR2", "NVARCHAR2", "CHAR", "NCHAR"}


@dataclass
class Table:
    owner: str
    name: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...] = ()
    pk_name: str = ""
    checks: list[tuple[str, str, frozenset[str]]] = field(default_factory=list)
    """(constraint name, column, allowed values) for ``CHECK (col IN (...))``."""
    rows: dict[tuple[object, ...], dict[str, object]] = field(default_factory=dict)
    grants: set[tuple[str, str]] = field(default_factory=set)
    """(user, privilege) pairs other users hold: SELECT, INSERT."""

    @property
    def qualified(self) -> str:
        return f"{self.owner}.{self.name}"


# ---------------------------------------------------------------------- faults


@dataclass
class Fault:
    operation: str
    """connect, ping, execute, parse, executemany, commit, rollback."""
    error: Callable[[], BaseException]
    times: int = 1
    after: bool = False
    """Raise after the operation took effect (a commit applied whose acknowledgement is lost)."""


# ---------------------------------------------------------------------- the database


_id_counter = itertools.count(1)


class FakeOracle:
    """The server and the network in one object; also the "driver module" the sink is given
    (it provides :meth:`create_pool`, as ``oracledb`` does)."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        service_name: str = "FREEPDB1",
        supports_bool: bool = True,
    ) -> None:
        self._lock = threading.RLock()
        self.users = {name.upper(): secret for name, secret in (users or {"APP": "app-secret"}).items()}
        self.service_name = service_name
        self.supports_bool = supports_bool
        self.tables: dict[tuple[str, str], Table] = {}
        self.indexes: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}
        self.up = True
        self.starting = False
        self.hang_s = 0.0
        self._faults: list[Fault] = []
        self._row_rules: list[tuple[Callable[[dict[str, object]], bool], int, str]] = []
        self._sessions: list[_Session] = []
        self.pools: list[FakePool] = []
        # What happened, for tests to check.
        self.executemany_calls = 0
        self.bind_types: list[tuple[str, ...]] = []
        self.connects = 0
        self.commits = 0
        self.call_timeouts: list[int] = []

    # --- the driver module's surface

    def create_pool(self, **kwargs: Any) -> FakePool:
        # The same keyword arguments python-oracledb accepts, or a TypeError like the real call.
        inspect.signature(oracledb.create_pool).bind(**kwargs)
        pool = FakePool(self, **kwargs)
        with self._lock:
            self.pools.append(pool)
        return pool

    # --- schema

    def execute_ddl(self, script: str, *, owner: str = "APP") -> None:
        """Run CREATE TABLE / CREATE INDEX / DROP TABLE statements as the collector prints them."""
        for statement in _statements(script):
            _run_ddl(self, statement, owner.upper())

    def table(self, name: str, owner: str = "APP") -> Table:
        return self.tables[(owner.upper(), name.upper())]

    def drop_column(self, table: str, column: str, owner: str = "APP") -> None:
        with self._lock:
            del self.table(table, owner).columns[column.upper()]

    def rows(self, table: str = "TAG_DATA", owner: str = "APP") -> list[dict[str, object]]:
        """The committed rows, as another session would see them."""
        with self._lock:
            return [dict(row) for row in self.table(table, owner).rows.values()]

    def count(self, table: str = "TAG_DATA", owner: str = "APP") -> int:
        with self._lock:
            return len(self.table(table, owner).rows)

    # --- faults

    def inject(
        self, operation: str, error: Callable[[], BaseException], *, times: int = 1, after: bool = False
    ) -> None:
        """Make the next ``times`` calls of ``operation`` fail with ``error()``."""
        with self._lock:
            self._faults.append(Fault(operation, error, times, after))

    def fail_rows(self, matches: Callable[[dict[str, object]], bool], code: int, text: str) -> None:
        """Make the server refuse every row for which ``matches(row)`` is true with ORA-``code``
        (a trigger, a tablespace that filled up while the batch was half written)."""
        with self._lock:
            self._row_rules.append((matches, code, text))

    def go_down(self) -> None:
        """The instance stops answering: new connections are refused, open sessions are lost."""
        with self._lock:
            self.up = False

    def come_up(self) -> None:
        with self._lock:
            self.up = True
            self.starting = False

    def kill_sessions(self) -> int:
        """ALTER SYSTEM KILL SESSION for every open session; each notices on its next call."""
        with self._lock:
            alive = [s for s in self._sessions if s.alive]
            for session in alive:
                session.killed = True
            return len(alive)

    @property
    def open_sessions(self) -> int:
        with self._lock:
            return sum(1 for s in self._sessions if s.alive and not s.closed)

    def _take_fault(self, operation: str, *, after: bool) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation == operation and fault.after == after and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
            return None

    # --- sessions

    def _connect(self, user: str | None, password: str | None, dsn: str | None) -> _Session:
        fault = self._take_fault("connect", after=False)
        if fault is not None:
            raise fault.error()
        with self._lock:
            if not self.up:
                raise connection_refused()
            service = _service_of(dsn or "")
            if service is not None and service.upper() != self.service_name.upper():
                host, port = _host_port_of(dsn or "")
                raise driver_error(
                    driver_errors.ERR_INVALID_SERVICE_NAME, service_name=service, host=host, port=port
                )
            if self.starting:
                raise instance_starting()
            if user is None or self.users.get(user.upper()) != password:
                raise invalid_login()
            session = _Session(next(_id_counter), user.upper())
            self._sessions.append(session)
            self.connects += 1
            return session

    def _round_trip(self, session: _Session, operation: str, call_timeout_ms: int) -> None:
        """What every call to the server goes through: the network, the instance, the clock."""
        if not session.alive:
            raise connection_lost()
        if session.killed:
            session.alive = False
            raise session_killed()
        if not self.up:
            session.alive = False
            raise connection_lost()
        fault = self._take_fault(operation, after=False)
        if fault is not None:
            _apply_fault(session, fault)
        hang = self.hang_s
        if hang > 0:
            if call_timeout_ms <= 0:
                raise WouldHangError(f"{operation} with no call_timeout while the database hangs")
            if hang * 1000 > call_timeout_ms:
                time.sleep(call_timeout_ms / 1000)
                # The break the driver sends gets no answer either: the session is unusable.
                session.alive = False
                raise driver_error(driver_errors.ERR_CALL_TIMEOUT_EXCEEDED, timeout=call_timeout_ms)
            time.sleep(hang)

    def _after(self, session: _Session, operation: str) -> None:
        fault = self._take_fault(operation, after=True)
        if fault is not None:
            _apply_fault(session, fault)

    # --- statements

    def _resolve(self, session: _Session, owner: str | None, name: str) -> Table:
        with self._lock:
            table = self.tables.get((owner or session.user, name))
            if table is None or not _can(session.user, table, "SELECT"):
                where = f'"{owner or session.user}"."{name}"'
                raise server_error(942, f"table or view {where} does not exist")
            return table

    def _insert_target(self, session: _Session, sql: str) -> tuple[Table, list[str]]:
        match = _INSERT.match(sql)
        if match is None:
            raise server_error(900, "invalid SQL statement")
        owner = _ident(match.group("owner")) if match.group("owner") else None
        table = self._resolve(session, owner, _ident(match.group("table")))
        if not _can(session.user, table, "INSERT"):
            raise server_error(1031, "insufficient privileges")
        names = [_ident(part) for part in _split_top(match.group("columns"))]
        binds = [part.strip() for part in _split_top(match.group("binds"))]
        for name in names:
            if name not in table.columns:
                raise server_error(904, f'"{name}": invalid identifier')
        if len(binds) < len(names):
            raise server_error(947, "not enough values")
        if len(binds) > len(names):
            raise server_error(913, "too many values")
        return table, names

    def _dictionary(self, session: _Session, sql: str, binds: dict[str, object]) -> list[tuple[object, ...]]:
        match = _DICTIONARY.match(sql)
        if match is None:
            raise server_error(900, "invalid SQL statement")
        view = match.group("view").upper()
        wanted = [part.strip().lower() for part in match.group("select").split(",")]
        name = str(binds.get("table_name", "")).upper()
        owner = str(binds.get("owner", "")).upper() if view == "ALL_TAB_COLUMNS" else session.user
        with self._lock:
            table = self.tables.get((owner, name))
            if table is None or not _can(session.user, table, "SELECT"):
                return []
            if view == "USER_TAB_COLUMNS" and table.owner != session.user:
                return []
            return [
                tuple(_dictionary_value(column, item) for item in wanted) for column in table.columns.values()
            ]

    def _insert_rows(
        self, session: _Session, table: Table, names: list[str], rows: list[list[object]], batcherrors: bool
    ) -> tuple[int, list[Any]]:
        inserted = 0
        errors: list[Any] = []
        with self._lock:
            pending_keys = {key for other in self._sessions for (t, key, _) in other.pending if t is table}
            for offset, values in enumerate(rows):
                try:
                    row = _server_row(table, dict(zip(names, values, strict=True)))
                    for matches, code, text in self._row_rules:
                        if matches(row):
                            raise _RowFailure(code, text)
                    key = (
                        tuple(row[c] for c in table.primary_key)
                        if table.primary_key
                        else (next(_id_counter),)
                    )
                    if key in table.rows or key in pending_keys:
                        raise _RowFailure(
                            1,
                            f"unique constraint ({table.owner}.{table.pk_name}) violated on table "
                            f"{table.qualified} columns ({', '.join(table.primary_key)})",
                        )
                except _RowFailure as failure:
                    if not batcherrors:
                        raise server_error(failure.code, failure.text, offset=offset) from None
                    errors.append(batch_error(failure.code, failure.text, offset))
                    continue
                session.pending.append((table, key, row))
                pending_keys.add(key)
                inserted += 1
        return inserted, errors

    def _commit(self, session: _Session) -> None:
        with self._lock:
            for table, key, row in session.pending:
                table.rows[key] = row
            session.pending.clear()
            self.commits += 1


@dataclass(eq=False)
class _Session:
    id: int
    user: str
    alive: bool = True
    killed: bool = False
    closed: bool = False
    pending: list[tuple[Table, tuple[object, ...], dict[str, object]]] = field(default_factory=list)


def _apply_fault(session: _Session, fault: Fault) -> None:
    error = fault.error()
    details = error.args[0] if error.args else None
    if getattr(details, "is_session_dead", False):
        session.alive = False
    raise error


def _can(user: str, table: Table, privilege: str) -> bool:
    return table.owner == user or (user, privilege) in table.grants


# ---------------------------------------------------------------------- pool and connection


class FakePool:
    """``oracledb.ConnectionPool`` as the thin driver behaves: a fixed number of sessions, a timed
    wait for a free one, connection errors raised at acquire, dead sessions discarded on release."""

    def __init__(self, db: FakeOracle, **kwargs: Any) -> None:
        self.db = db
        self.kwargs = kwargs
        self.min = int(kwargs.get("min", 1))
        self.max = int(kwargs.get("max", 2))
        if self.max < self.min:
            raise driver_error(driver_errors.ERR_POOL_MAX_LESS_THAN_MIN)
        self.getmode = kwargs.get("getmode", oracledb.POOL_GETMODE_WAIT)
        self.wait_timeout_ms = int(kwargs.get("wait_timeout", 0) or 0)
        self._user = kwargs.get("user")
        self._password = kwargs.get("password")
        self._dsn = kwargs.get("dsn")
        self._cond = threading.Condition()
        self._idle: list[_Session] = []
        self._busy = 0
        self._open = True
        self.dropped = 0
        self.acquired = 0

    @property
    def busy(self) -> int:
        with self._cond:
            return self._busy

    @property
    def opened(self) -> int:
        with self._cond:
            return self._busy + len(self._idle)

    def acquire(self) -> FakeConnection:
        with self._cond:
            if not self._open:
                raise driver_error(driver_errors.ERR_POOL_NOT_OPEN)
            deadline = None
            if self.getmode == oracledb.POOL_GETMODE_TIMEDWAIT:
                deadline = time.monotonic() + self.wait_timeout_ms / 1000
            while self._busy >= self.max:
                if deadline is None:
                    # POOL_GETMODE_WAIT blocks for ever; a test must never do that.
                    raise WouldHangError("pool exhausted and getmode waits for ever")
                remaining = deadline - time.monotonic()
                timed_out = remaining <= 0 or not self._cond.wait(remaining)
                if timed_out and self._busy >= self.max:
                    raise driver_error(driver_errors.ERR_POOL_NO_CONNECTION_AVAILABLE)
            session = self._idle.pop(0) if self._idle else None
            self._busy += 1
        if session is None:
            try:
                session = self.db._connect(self._user, self._password, self._dsn)
            except BaseException:
                self._give_back(None)
                raise
        self.acquired += 1
        return FakeConnection(self, session)

    def _give_back(self, session: _Session | None) -> None:
        with self._cond:
            self._busy -= 1
            if session is not None and session.alive and not session.killed and self._open:
                self._idle.append(session)
            elif session is not None:
                session.closed = True
            self._cond.notify()

    def release(self, connection: FakeConnection) -> None:
        self._verify_open()
        session = connection._detach()
        # The pool rolls back whatever the connection left uncommitted.
        session.pending.clear()
        self._give_back(session)

    def drop(self, connection: FakeConnection) -> None:
        self._verify_open()
        session = connection._detach()
        session.pending.clear()
        session.alive = False
        self.dropped += 1
        self._give_back(session)

    def close(self, force: bool = False) -> None:
        self._verify_open()
        with self._cond:
            if self._busy and not force:
                raise driver_error(driver_errors.ERR_POOL_HAS_BUSY_CONNECTIONS)
            self._open = False
            for session in self._idle:
                session.closed = True
            self._idle.clear()
            self._cond.notify_all()

    def _verify_open(self) -> None:
        if not self._open:
            raise driver_error(driver_errors.ERR_POOL_NOT_OPEN)


class FakeConnection:
    def __init__(self, pool: FakePool, session: _Session) -> None:
        self._pool = pool
        self._db = pool.db
        self._session: _Session | None = session
        self._call_timeout_ms = 0
        self.autocommit = False

    def _live(self) -> _Session:
        if self._session is None:
            raise driver_error(driver_errors.ERR_NOT_CONNECTED)
        return self._session

    def _detach(self) -> _Session:
        session = self._live()
        self._session = None
        return session

    def _trip(self, operation: str) -> _Session:
        session = self._live()
        self._db._round_trip(session, operation, self._call_timeout_ms)
        return session

    @property
    def call_timeout(self) -> int:
        self._live()
        return self._call_timeout_ms

    @call_timeout.setter
    def call_timeout(self, value: int) -> None:
        self._live()
        if not isinstance(value, int) or value < 0:
            raise TypeError(f"call_timeout must be a non-negative integer (milliseconds), got {value!r}")
        self._call_timeout_ms = value
        with self._db._lock:
            self._db.call_timeouts.append(value)

    def is_healthy(self) -> bool:
        session = self._session
        return session is not None and session.alive and not session.killed and self._db.up

    def cursor(self) -> FakeCursor:
        self._live()
        return FakeCursor(self)

    def ping(self) -> None:
        session = self._trip("ping")
        self._db._after(session, "ping")

    def commit(self) -> None:
        session = self._trip("commit")
        self._db._commit(session)
        self._db._after(session, "commit")

    def rollback(self) -> None:
        session = self._trip("rollback")
        session.pending.clear()

    def close(self) -> None:
        self._pool.release(self)


_NAMES = {
    oracledb.DB_TYPE_NUMBER: "NUMBER",
    oracledb.DB_TYPE_VARCHAR: "VARCHAR",
    oracledb.DB_TYPE_DATE: "DATE",
    oracledb.DB_TYPE_TIMESTAMP: "TIMESTAMP",
    oracledb.DB_TYPE_BOOLEAN: "BOOLEAN",
    oracledb.DB_TYPE_BINARY_INTEGER: "BINARY_INTEGER",
}


@dataclass
class _BindVar:
    dbtype: Any = None
    size: int | None = None
    has_value: bool = False


class FakeCursor:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection
        self._db = connection._db
        self._declared: list[Any] = []
        self._batch_errors: list[Any] = []
        self._results: list[tuple[object, ...]] = []
        self.rowcount = 0
        self._open = True

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._open = False

    def _verify(self) -> None:
        if not self._open:
            raise driver_error(driver_errors.ERR_CURSOR_NOT_OPEN)
        self.connection._live()

    def setinputsizes(self, *sizes: Any) -> list[Any]:
        self._verify()
        self._declared = list(sizes)
        return list(sizes)

    def parse(self, statement: str) -> None:
        self._verify()
        session = self.connection._trip("parse")
        if _DICTIONARY.match(statement):
            return
        self._db._insert_target(session, statement)

    def execute(self, statement: str, parameters: dict[str, object] | None = None) -> FakeCursor:
        self._verify()
        session = self.connection._trip("execute")
        self._results = self._db._dictionary(session, statement, dict(parameters or {}))
        self.rowcount = 0
        self._declared = []
        self._db._after(session, "execute")
        return self

    def fetchall(self) -> list[tuple[object, ...]]:
        self._verify()
        rows, self._results = self._results, []
        self.rowcount = len(rows)
        return rows

    def executemany(
        self,
        statement: str,
        parameters: Sequence[Sequence[object]],
        *,
        batcherrors: bool = False,
        arraydmlrowcounts: bool = False,
        **_ignored: object,
    ) -> None:
        self._verify()
        # The client binds every row before anything is sent: a value it refuses fails the call.
        bound, types = _bind_all(self._declared, parameters, supports_bool=self._db.supports_bool)
        session = self.connection._trip("executemany")
        with self._db._lock:
            self._db.executemany_calls += 1
            self._db.bind_types.append(types)
        table, names = self._db._insert_target(session, statement)
        if bound and len(bound[0]) != len(names):
            raise driver_error(
                driver_errors.ERR_WRONG_NUMBER_OF_POSITIONAL_BINDS,
                expected_num=len(names),
                actual_num=len(bound[0]),
            )
        inserted, errors = self._db._insert_rows(session, table, names, bound, batcherrors)
        self.rowcount = inserted
        self._batch_errors = errors
        self._declared = []
        self._db._after(session, "executemany")

    def getbatcherrors(self) -> list[Any]:
        self._verify()
        return list(self._batch_errors)


# ---------------------------------------------------------------------- client-side binding


def _bind_all(
    declared: list[Any], rows: Sequence[Sequence[object]], *, supports_bool: bool
) -> tuple[list[list[object]], tuple[str, ...]]:
    width = max((len(row) for row in rows), default=len(declared))
    variables = [_declared_var(declared[i] if i < len(declared) else None) for i in range(width)]
    out: list[list[object]] = []
    for row in rows:
        if len(row) != width:
            raise driver_error(
                driver_errors.ERR_WRONG_NUMBER_OF_POSITIONAL_BINDS, expected_num=width, actual_num=len(row)
            )
        converted: list[object] = []
        for var, value in zip(variables, row, strict=True):
            converted.append(_bind_value(var, value, supports_bool))
        out.append(converted)
    types = tuple(
        _NAMES.get(var.dbtype, "VARCHAR" if var.dbtype is None else str(var.dbtype)) for var in variables
    )
    return out, types


def _declared_var(declared: Any) -> _BindVar:
    if declared is None:
        return _BindVar()
    if isinstance(declared, int) and not isinstance(declared, bool):
        return _BindVar(oracledb.DB_TYPE_VARCHAR, declared)
    if isinstance(declared, oracledb.DbType):
        return _BindVar(declared)
    if declared in (int, float):
        return _BindVar(oracledb.DB_TYPE_NUMBER)
    if declared is str:
        return _BindVar(oracledb.DB_TYPE_VARCHAR)
    if declared is dt.datetime:
        return _BindVar(oracledb.DB_TYPE_TIMESTAMP)
    raise driver_error(driver_errors.ERR_PYTHON_TYPE_NOT_SUPPORTED, typ=declared)


def _type_of(value: object, supports_bool: bool) -> Any:
    if isinstance(value, bool):
        return oracledb.DB_TYPE_BOOLEAN if supports_bool else oracledb.DB_TYPE_BINARY_INTEGER
    if isinstance(value, str):
        return oracledb.DB_TYPE_VARCHAR
    if isinstance(value, int | float | Decimal):
        return oracledb.DB_TYPE_NUMBER
    if isinstance(value, dt.date):  # datetime included: python-oracledb binds it as DATE
        return oracledb.DB_TYPE_DATE
    raise driver_error(driver_errors.ERR_PYTHON_VALUE_NOT_SUPPORTED, type_name=type(value).__name__)


def _acceptable(dbtype: Any, value: object) -> bool:
    if dbtype in (oracledb.DB_TYPE_NUMBER, oracledb.DB_TYPE_BINARY_INTEGER):
        return isinstance(value, bool | int | float | Decimal)
    if dbtype is oracledb.DB_TYPE_VARCHAR:
        return isinstance(value, str | bytes)
    if dbtype in (oracledb.DB_TYPE_DATE, oracledb.DB_TYPE_TIMESTAMP):
        return isinstance(value, dt.date)
    return dbtype is oracledb.DB_TYPE_BOOLEAN


def _bind_value(var: _BindVar, value: object, supports_bool: bool) -> object:
    if value is None:
        return None
    if var.dbtype is None or (not var.has_value and not _acceptable(var.dbtype, value)):
        # No type yet, or a declared type the first value does not fit: the driver replaces the
        # variable with one made from the value.
        var.dbtype = _type_of(value, supports_bool)
    elif not _acceptable(var.dbtype, value):
        raise driver_error(
            driver_errors.ERR_UNSUPPORTED_PYTHON_TYPE_FOR_DB_TYPE,
            py_type_name=type(value).__name__,
            db_type_name=var.dbtype.name,
        )
    var.has_value = True
    return _encode(var.dbtype, value)


def _encode(dbtype: Any, value: object) -> object:
    """What reaches the server for ``value`` in a variable of ``dbtype``."""
    if dbtype in (oracledb.DB_TYPE_NUMBER, oracledb.DB_TYPE_BINARY_INTEGER):
        number = int(value) if isinstance(value, bool) else value
        return _oracle_number(str(number))
    if dbtype is oracledb.DB_TYPE_VARCHAR:
        return value.decode() if isinstance(value, bytes) else value
    if dbtype is oracledb.DB_TYPE_BOOLEAN:
        return bool(value)
    assert isinstance(value, dt.date)
    stamp = value if isinstance(value, dt.datetime) else dt.datetime(value.year, value.month, value.day)
    stamp = stamp.replace(tzinfo=None)  # thin mode sends the wall-clock fields; tzinfo is ignored
    if dbtype is oracledb.DB_TYPE_DATE:
        return stamp.replace(microsecond=0)  # DATE has no fractional seconds
    return stamp


def _oracle_number(text: str) -> Decimal:
    """python-oracledb's client-side NUMBER encoding rules, raising its errors."""
    if not text:
        raise driver_error(driver_errors.ERR_NUMBER_STRING_OF_ZERO_LENGTH)
    if len(text) > 172:
        raise driver_error(driver_errors.ERR_NUMBER_STRING_TOO_LONG)
    if not re.fullmatch(r"-?[0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)?", text):
        raise driver_error(driver_errors.ERR_INVALID_NUMBER)  # nan, inf, -inf
    number = Decimal(text)
    if number == 0:
        return Decimal(0)
    # Significant digits without trailing zeros (normalize() would round to the context's 28).
    digits = len("".join(map(str, number.as_tuple().digits)).strip("0"))
    point = number.adjusted() + 1
    if digits > 40 or point > 126 or point < -129:
        raise driver_error(driver_errors.ERR_ORACLE_NUMBER_NO_REPR)
    return number


# ---------------------------------------------------------------------- server-side row rules


class _RowFailure(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def _server_row(table: Table, given: dict[str, object]) -> dict[str, object]:
    row: dict[str, object] = {}
    for name, column in table.columns.items():
        value = given.get(name, column.default)
        row[name] = _store(table, column, value)
    for constraint, column_name, allowed in table.checks:
        value = row[column_name]
        if value is not None and str(value) not in allowed:
            raise _RowFailure(2290, f"check constraint ({table.owner}.{constraint}) violated")
    return row


def _store(table: Table, column: Column, value: object) -> object:
    where = f'"{table.owner}"."{table.name}"."{column.name}"'
    if value == "":
        value = None  # Oracle has no empty string: '' is NULL
    if value is None:
        if not column.nullable:
            raise _RowFailure(1400, f"cannot insert NULL into ({where})")
        return None
    if column.is_text:
        text = value if isinstance(value, str) else _to_char(value)
        size = len(text) if column.char_semantics else len(text.encode())
        if column.length is not None and size > column.length:
            raise _RowFailure(
                12899, f"value too large for column {where} (actual: {size}, maximum: {column.length})"
            )
        return text
    if column.data_type in {"NUMBER", "FLOAT"}:
        try:
            number = (
                value
                if isinstance(value, Decimal)
                else Decimal(str(int(value) if value is True or value is False else value))
            )
        except InvalidOperation:
            raise _RowFailure(1722, "invalid number") from None
        if column.scale is not None:
            number = number.quantize(Decimal(1).scaleb(-column.scale))
        if column.precision is not None:
            integer_digits = max(number.adjusted() + 1, 0)
            if integer_digits > column.precision - (column.scale or 0):
                raise _RowFailure(1438, "value larger than specified precision allowed for this column")
        return number
    if column.data_type == "DATE" or column.data_type.startswith("TIMESTAMP"):
        if not isinstance(value, dt.datetime):
            raise _RowFailure(1861, "literal does not match format string")
        if column.data_type == "DATE":
            return value.replace(microsecond=0)
        digits = column.scale if column.scale is not None else 6
        factor = 10 ** (6 - digits)
        return value.replace(microsecond=(value.microsecond // factor) * factor)
    raise _RowFailure(932, f"inconsistent datatypes: expected {column.data_type}")


def _to_char(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    return str(value)


def _dictionary_value(column: Column, item: str) -> object:
    if item == "column_name":
        return column.name
    if item == "data_type":
        return column.dictionary_type
    if item == "char_length":
        return column.length if column.is_text else 0
    if item == "data_length":
        return (column.length or 0) * (4 if column.char_semantics else 1) if column.is_text else 22
    if item == "data_precision":
        return column.precision if column.data_type in {"NUMBER", "FLOAT"} else None
    if item == "data_scale":
        if column.data_type.startswith("TIMESTAMP"):
            return column.scale if column.scale is not None else 6
        return column.scale if column.data_type == "NUMBER" else None
    if item == "nullable":
        return "Y" if column.nullable else "N"
    if item == "default_length":
        return len(column.default) if column.default is not None else None
    raise server_error(904, f'"{item.upper()}": invalid identifier')


# ---------------------------------------------------------------------- SQL recognition

_NAME = r'(?:"[^"]+"|[A-Za-z_][\w$#]*)'
_INSERT = re.compile(
    rf"^\s*INSERT\s+INTO\s+(?:(?P<owner>{_NAME})\.)?(?P<table>{_NAME})\s*"
    r"\((?P<columns>[^)]*)\)\s*VALUES\s*\((?P<binds>[^)]*)\)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_DICTIONARY = re.compile(
    r"^\s*SELECT\s+(?P<select>.+?)\s+FROM\s+(?P<view>user_tab_columns|all_tab_columns)\b.*$",
    re.IGNORECASE | re.DOTALL,
)


def _ident(text: str) -> str:
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    return text.upper()


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses or quotes."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    current: list[str] = []
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = None
            continue
        if char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _statements(script: str) -> Iterable[str]:
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()


_CREATE_TABLE = re.compile(
    rf"^CREATE\s+TABLE\s+(?:(?P<owner>{_NAME})\.)?(?P<table>{_NAME})\s*\((?P<body>.*)\)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CREATE_INDEX = re.compile(
    rf"^CREATE\s+INDEX\s+(?:(?P<iowner>{_NAME})\.)?(?P<index>{_NAME})\s+ON\s+"
    rf"(?:(?P<owner>{_NAME})\.)?(?P<table>{_NAME})\s*\((?P<columns>[^)]*)\)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_DROP_TABLE = re.compile(rf"^DROP\s+TABLE\s+(?:(?P<owner>{_NAME})\.)?(?P<table>{_NAME})(\s+PURGE)?\s*$", re.I)
_COLUMN = re.compile(
    rf"^(?P<name>{_NAME})\s+(?P<type>VARCHAR2|NVARCHAR2|CHAR|NCHAR|NUMBER|FLOAT|DATE|TIMESTAMP)"
    r"(?:\s*\((?P<args>[^)]*)\))?(?P<zone>\s+WITH(?:\s+LOCAL)?\s+TIME\s+ZONE)?"
    r"(?:\s+DEFAULT\s+(?P<default>'[^']*'|\S+))?(?P<notnull>\s+NOT\s+NULL)?\s*$",
    re.IGNORECASE,
)
_PRIMARY_KEY = re.compile(rf"^CONSTRAINT\s+(?P<name>{_NAME})\s+PRIMARY\s+KEY\s*\((?P<columns>[^)]*)\)$", re.I)
_CHECK_IN = re.compile(
    rf"^CONSTRAINT\s+(?P<name>{_NAME})\s+CHECK\s*\(\s*(?P<column>{_NAME})\s+IN\s*\((?P<values>[^)]*)\)\s*\)$",
    re.I,
)


def _run_ddl(db: FakeOracle, statement: str, owner: str) -> None:
    flat = " ".join(statement.split())
    if match := _CREATE_TABLE.match(statement):
        _create_table(db, match, owner)
    elif match := _CREATE_INDEX.match(flat):
        table_owner = _ident(match.group("owner")) if match.group("owner") else owner
        table = db.table(_ident(match.group("table")), table_owner)
        columns = tuple(_ident(c) for c in _split_top(match.group("columns")))
        for column in columns:
            if column not in table.columns:
                raise server_error(904, f'"{column}": invalid identifier')
        with db._lock:
            db.indexes[(table_owner, _ident(match.group("index")))] = (table.name, columns)
    elif match := _DROP_TABLE.match(flat):
        key = (_ident(match.group("owner")) if match.group("owner") else owner, _ident(match.group("table")))
        with db._lock:
            if key not in db.tables:
                raise server_error(942, "table or view does not exist")
            del db.tables[key]
    else:
        raise server_error(900, "invalid SQL statement")


def _create_table(db: FakeOracle, match: re.Match[str], owner: str) -> None:
    table_owner = _ident(match.group("owner")) if match.group("owner") else owner
    name = _ident(match.group("table"))
    table = Table(table_owner, name, {})
    for item in _split_top(match.group("body")):
        flat = " ".join(item.split())
        if pk := _PRIMARY_KEY.match(flat):
            table.pk_name = _ident(pk.group("name"))
            table.primary_key = tuple(_ident(c) for c in _split_top(pk.group("columns")))
            continue
        if check := _CHECK_IN.match(flat):
            values = frozenset(v.strip().strip("'") for v in _split_top(check.group("values")))
            table.checks.append((_ident(check.group("name")), _ident(check.group("column")), values))
            continue
        column = _COLUMN.match(flat)
        if column is None:
            raise server_error(902, f"invalid datatype in: {flat}")
        table.columns[_ident(column.group("name"))] = _column_of(column)
    for key_column in table.primary_key:
        if key_column not in table.columns:
            raise server_error(904, f'"{key_column}": invalid identifier')
        table.columns[key_column].nullable = False  # a primary key implies NOT NULL
    with db._lock:
        if (table_owner, name) in db.tables:
            raise server_error(955, "name is already used by an existing object")
        db.tables[(table_owner, name)] = table


def _column_of(match: re.Match[str]) -> Column:
    kind = match.group("type").upper()
    args = [a.strip() for a in (match.group("args") or "").split(",") if a.strip()]
    column = Column(_ident(match.group("name")), kind, nullable=not match.group("notnull"))
    if match.group("default"):
        column.default = match.group("default").strip("'")
    if kind in {"VARCHAR2", "NVARCHAR2", "CHAR", "NCHAR"}:
        size, _, semantics = (args[0] if args else "1").partition(" ")
        column.length = int(size)
        column.char_semantics = semantics.upper() == "CHAR"  # NLS_LENGTH_SEMANTICS is BYTE by default
    elif kind in {"NUMBER", "FLOAT"} and args:
        column.precision = int(args[0])
        column.scale = int(args[1]) if len(args) > 1 else (0 if kind == "NUMBER" else None)
    elif kind == "TIMESTAMP":
        column.scale = int(args[0]) if args else 6
        if match.group("zone"):
            column.data_type = "TIMESTAMP " + " ".join(match.group("zone").split()).upper()
    return column


def _service_of(dsn: str) -> str | None:
    match = re.match(r"^(?:\w+://)?[^/]*/([^?]+)", dsn.strip())
    return match.group(1) if match else None


def _host_port_of(dsn: str) -> tuple[str, int]:
    match = re.match(r"^(?:\w+://)?([^:/]+)(?::(\d+))?", dsn.strip())
    if match is None:
        return "localhost", 1521
    return match.group(1), int(match.group(2) or 1521)
