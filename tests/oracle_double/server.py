"""The server and the network in one object: sessions, transactions, faults, the instance going
down or hanging, and the statements the sink sends, executed against the catalog."""

from __future__ import annotations

import inspect
import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import oracledb
from oracledb import errors as driver_errors

from tests.oracle_double.client import FakeConnection, FakePool
from tests.oracle_double.errors import (
    WouldHangError,
    account_locked,
    batch_error,
    connection_lost,
    connection_refused,
    driver_error,
    instance_starting,
    invalid_login,
    password_expired,
    server_error,
    session_killed,
)
from tests.oracle_double.schema import Catalog, RowFailure, Table, can, dictionary_value, server_row
from tests.oracle_double.sql import (
    CONTEXT_SELECT,
    DICTIONARY,
    INSERT,
    KEY_SELECT,
    USERENV_ITEM,
    host_port_of,
    ident,
    service_of,
    split_top,
)


@dataclass
class Fault:
    operation: str
    """connect, ping, execute, parse, executemany, commit, rollback."""
    error: Callable[[], BaseException]
    times: int = 1
    after: bool = False
    """Raise after the operation took effect (a commit applied whose acknowledgement is lost)."""


_id_counter = itertools.count(1)

GATE_LIMIT_S = 30.0
"""A held call that nobody releases fails the test rather than hanging it."""


class FakeOracle:
    """The server and the network in one object; also the "driver module" the sink is given
    (it provides :meth:`create_pool`, as ``oracledb`` does)."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        service_name: str = "FREEPDB1",
        supports_bool: bool = True,
        failed_login_attempts: int | None = 10,
    ) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        """Notified whenever uncommitted rows go (commit, rollback, a session lost): row-lock waiters."""
        self.lock_waits = 0
        self._gates: list[tuple[str, threading.Event]] = []
        self.users = {name.upper(): secret for name, secret in (users or {"APP": "app-secret"}).items()}
        self.service_name = service_name
        self.failed_login_attempts = failed_login_attempts
        """The DEFAULT profile's FAILED_LOGIN_ATTEMPTS (10); None for UNLIMITED."""
        self.failed_logins: dict[str, int] = {}
        """Refused logins in a row per user, as the profile counts them."""
        self.locked: set[str] = set()
        self.expired: set[str] = set()
        self.logins: list[str] = []
        """Every login attempt's user name, in order (a test counts them)."""
        self.refused_logins = 0
        # The container database of the image: DB_NAME FREE, one instance of the same name.
        self.db_unique_name = "FREE"
        self.db_name = "FREE"
        self.instance_name = "FREE"
        self.supports_bool = supports_bool
        self.catalog = Catalog(self.lock)
        self.tables = self.catalog.tables
        self.indexes = self.catalog.indexes
        self.up = True
        self.starting = False
        self.hang_s = 0.0
        self._faults: list[Fault] = []
        self._row_rules: list[tuple[Callable[[dict[str, object]], bool], int, str]] = []
        self._sessions: list[Session] = []
        self.pools: list[FakePool] = []
        # What happened, for tests to check.
        self.executemany_calls = 0
        self.bind_types: list[tuple[str, ...]] = []
        self.connects = 0
        self.commits = 0
        self.call_timeouts: list[int] = []

    def userenv(self, name: str) -> str:
        """``SYS_CONTEXT('USERENV', name)`` for the few names the collector reads."""
        values = {
            "DB_UNIQUE_NAME": self.db_unique_name,
            "DB_NAME": self.db_name,
            "INSTANCE_NAME": self.instance_name,
            "CON_NAME": self.service_name.upper(),
            "SERVICE_NAME": self.service_name,
        }
        if name.upper() not in values:
            raise server_error(2003, "invalid USERENV parameter")
        return values[name.upper()]

    # --- the driver module's surface

    def connect(self, **kwargs: Any) -> FakeConnection:
        """A standalone connection (``oracledb.connect``): one login, no pool."""
        inspect.signature(oracledb.connect).bind(**kwargs)
        pool = FakePool(self, **{**kwargs, "min": 1, "max": 1})
        return pool.acquire(standalone=True)

    def create_pool(self, **kwargs: Any) -> FakePool:
        # The same keyword arguments python-oracledb accepts, or a TypeError like the real call.
        inspect.signature(oracledb.create_pool).bind(**kwargs)
        pool = FakePool(self, **kwargs)
        with self.lock:
            self.pools.append(pool)
        return pool

    # --- schema

    def execute_ddl(self, script: str, *, owner: str = "APP") -> None:
        """Run CREATE TABLE / CREATE INDEX / DROP TABLE statements as the collector prints them."""
        self.catalog.execute_ddl(script, owner)

    def table(self, name: str, owner: str = "APP") -> Table:
        return self.catalog.table(name, owner)

    def drop_column(self, table: str, column: str, owner: str = "APP") -> None:
        with self.lock:
            del self.table(table, owner).columns[column.upper()]

    def rows(self, table: str = "TAG_DATA", owner: str = "APP") -> list[dict[str, object]]:
        """The committed rows, as another session would see them."""
        with self.lock:
            return [dict(row) for row in self.table(table, owner).rows.values()]

    def count(self, table: str = "TAG_DATA", owner: str = "APP") -> int:
        with self.lock:
            return len(self.table(table, owner).rows)

    # --- faults

    def hold(self, operation: str) -> threading.Event:
        """Make the next call of ``operation`` (from any session) wait until the returned event is
        set: a session paused between its insert and its commit, holding its row locks."""
        gate = threading.Event()
        with self.lock:
            self._gates.append((operation, gate))
        return gate

    def inject(
        self, operation: str, error: Callable[[], BaseException], *, times: int = 1, after: bool = False
    ) -> None:
        """Make the next ``times`` calls of ``operation`` fail with ``error()``."""
        with self.lock:
            self._faults.append(Fault(operation, error, times, after))

    def fail_rows(self, matches: Callable[[dict[str, object]], bool], code: int, text: str) -> None:
        """Make the server refuse every row for which ``matches(row)`` is true with ORA-``code``
        (a trigger, a tablespace that filled up while the batch was half written)."""
        with self.lock:
            self._row_rules.append((matches, code, text))

    def go_down(self) -> None:
        """The instance stops answering: new connections are refused, open sessions are lost
        (and with them their uncommitted rows)."""
        with self.lock:
            self.up = False
            for session in self._sessions:
                session.pending.clear()
            self.changed.notify_all()

    def come_up(self) -> None:
        with self.lock:
            self.up = True
            self.starting = False

    def kill_sessions(self) -> int:
        """ALTER SYSTEM KILL SESSION for every open session; each notices on its next call."""
        with self.lock:
            alive = [s for s in self._sessions if s.alive]
            for session in alive:
                session.killed = True
                session.pending.clear()  # PMON rolls a killed session's transaction back
            self.changed.notify_all()
            return len(alive)

    @property
    def open_sessions(self) -> int:
        with self.lock:
            return sum(1 for s in self._sessions if s.alive and not s.closed)

    def _take_fault(self, operation: str, *, after: bool) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.operation == operation and fault.after == after and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
            return None

    # --- sessions

    def open_session(self, user: str | None, password: str | None, dsn: str | None) -> Session:
        """A login: the listener, the service, the instance, then the account's password and
        profile. Every refused password counts against ``FAILED_LOGIN_ATTEMPTS``; at the limit the
        account locks (ORA-28000 for every later login, the right password included, until a DBA
        unlocks it). A good login resets the count."""
        fault = self._take_fault("connect", after=False)
        if fault is not None:
            raise fault.error()
        with self.lock:
            if not self.up:
                raise connection_refused()
            service = service_of(dsn or "")
            if service is not None and service.upper() != self.service_name.upper():
                host, port = host_port_of(dsn or "")
                raise driver_error(
                    driver_errors.ERR_INVALID_SERVICE_NAME, service_name=service, host=host, port=port
                )
            if self.starting:
                raise instance_starting()
            name = (user or "").upper()
            self.logins.append(name)
            if name in self.locked:
                self.refused_logins += 1
                raise account_locked()
            if name not in self.users or self.users[name] != password:
                self.refused_logins += 1
                if name in self.users:
                    self.failed_logins[name] = self.failed_logins.get(name, 0) + 1
                    limit = self.failed_login_attempts
                    if limit is not None and self.failed_logins[name] >= limit:
                        self.locked.add(name)
                raise invalid_login()
            if name in self.expired:
                self.refused_logins += 1
                raise password_expired()
            self.failed_logins[name] = 0
            session = Session(next(_id_counter), name)
            self._sessions.append(session)
            self.connects += 1
            return session

    # --- the DBA

    def set_password(self, user: str, password: str) -> None:
        """ALTER USER ... IDENTIFIED BY: sessions already open stay open, as in Oracle."""
        with self.lock:
            self.users[user.upper()] = password
            self.expired.discard(user.upper())

    def unlock(self, user: str) -> None:
        """ALTER USER ... ACCOUNT UNLOCK."""
        with self.lock:
            self.locked.discard(user.upper())
            self.failed_logins[user.upper()] = 0

    def expire(self, user: str) -> None:
        """ALTER USER ... PASSWORD EXPIRE: the next login with the right password gets ORA-28001."""
        with self.lock:
            self.expired.add(user.upper())

    def round_trip(self, session: Session, operation: str, call_timeout_ms: int) -> None:
        """What every call to the server goes through: the network, the instance, the clock."""
        if not session.alive:
            raise connection_lost()
        if session.killed:
            session.alive = False
            raise session_killed()
        if not self.up:
            session.alive = False
            raise connection_lost()
        with self.lock:
            gate = next((g for op, g in self._gates if op == operation), None)
            if gate is not None:
                self._gates.remove((operation, gate))
        if gate is not None and not gate.wait(GATE_LIMIT_S):
            raise WouldHangError(f"{operation} held for {GATE_LIMIT_S} s: the test never released it")
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

    def after_call(self, session: Session, operation: str) -> None:
        fault = self._take_fault(operation, after=True)
        if fault is not None:
            _apply_fault(session, fault)

    # --- statements

    def _resolve(self, session: Session, owner: str | None, name: str) -> Table:
        with self.lock:
            table = self.tables.get((owner or session.user, name))
            if table is None or not can(session.user, table, "SELECT"):
                where = f'"{owner or session.user}"."{name}"'
                raise server_error(942, f"table or view {where} does not exist")
            return table

    def insert_target(self, session: Session, sql: str) -> tuple[Table, list[str]]:
        match = INSERT.match(sql)
        if match is None:
            raise server_error(900, "invalid SQL statement")
        owner = ident(match.group("owner")) if match.group("owner") else None
        table = self._resolve(session, owner, ident(match.group("table")))
        if not can(session.user, table, "INSERT"):
            raise server_error(1031, "insufficient privileges")
        names = [ident(part) for part in split_top(match.group("columns"))]
        binds = [part.strip() for part in split_top(match.group("binds"))]
        for name in names:
            if name not in table.columns:
                raise server_error(904, f'"{name}": invalid identifier')
        if len(binds) < len(names):
            raise server_error(947, "not enough values")
        if len(binds) > len(names):
            raise server_error(913, "too many values")
        return table, names

    def dictionary(self, session: Session, sql: str, binds: dict[str, object]) -> list[tuple[object, ...]]:
        context = CONTEXT_SELECT.match(sql)
        if context is not None:
            return [tuple(self.userenv(name) for name in USERENV_ITEM.findall(context.group("items")))]
        match = DICTIONARY.match(sql)
        if match is None:
            raise server_error(900, "invalid SQL statement")
        view = match.group("view").upper()
        wanted = [part.strip().lower() for part in match.group("select").split(",")]
        name = str(binds.get("table_name", "")).upper()
        owner = str(binds.get("owner", "")).upper() if view == "ALL_TAB_COLUMNS" else session.user
        with self.lock:
            table = self.tables.get((owner, name))
            if table is None or not can(session.user, table, "SELECT"):
                return []
            if view == "USER_TAB_COLUMNS" and table.owner != session.user:
                return []
            return [
                tuple(dictionary_value(column, item) for item in wanted) for column in table.columns.values()
            ]

    def select_keys(self, session: Session, sql: str, values: list[object]) -> list[tuple[object, ...]]:
        """``SELECT a, b FROM t WHERE (a, b) IN ((:1, :2), ...)``: the committed rows whose (a, b)
        equals one of the bound pairs, as another session sees them."""
        match = KEY_SELECT.match(sql)
        if match is None:
            raise server_error(900, "invalid SQL statement")
        owner = ident(match.group("owner")) if match.group("owner") else None
        table = self._resolve(session, owner, ident(match.group("table")))
        selected = [ident(match.group("first")), ident(match.group("second"))]
        compared = [ident(match.group("left")), ident(match.group("right"))]
        for name in selected + compared:
            if name not in table.columns:
                raise server_error(904, f'"{name}": invalid identifier')
        placeholders = re.findall(r":\w+", match.group("pairs"))
        if len(placeholders) != len(values):
            raise server_error(1008, "not all variables bound")
        if len(placeholders) // 2 > 1000:
            raise server_error(1795, "maximum number of expressions in a list is 1000")
        wanted = {(values[i], values[i + 1]) for i in range(0, len(values), 2)}
        with self.lock:
            return [
                (row[selected[0]], row[selected[1]])
                for row in table.rows.values()
                if (row[compared[0]], row[compared[1]]) in wanted
            ]

    def insert_rows(
        self,
        session: Session,
        table: Table,
        names: list[str],
        rows: list[list[object]],
        batcherrors: bool,
        *,
        call_timeout_ms: int = 0,
    ) -> tuple[int, list[Any]]:
        """Run one INSERT per parameter set, as Oracle does inside one call.

        A key another session inserted and has not committed is locked: this session waits until
        that one commits (then the row is a duplicate, ORA-00001) or rolls back (then it goes in),
        for at most the call timeout (DPY-4024). Two sessions each waiting for the other is a
        deadlock: the one that would close the circle gets ORA-00060. Either failure undoes this
        call's rows (statement-level rollback); the session's earlier work stays.
        """
        inserted = 0
        errors: list[Any] = []
        deadline = time.monotonic() + call_timeout_ms / 1000 if call_timeout_ms > 0 else None
        with self.lock:
            mark = len(session.pending)
            own_keys = {key for (t, key, _) in session.pending if t is table}
            try:
                for offset, values in enumerate(rows):
                    try:
                        row = server_row(table, dict(zip(names, values, strict=True)))
                        for matches, code, text in self._row_rules:
                            if matches(row):
                                raise RowFailure(code, text)
                        key = (
                            tuple(row[c] for c in table.primary_key)
                            if table.primary_key
                            else (next(_id_counter),)
                        )
                        if key not in own_keys:
                            self._wait_for_row_lock(session, table, key, deadline, call_timeout_ms)
                        if key in table.rows or key in own_keys:
                            raise RowFailure(
                                1,
                                f"unique constraint ({table.owner}.{table.pk_name}) violated on table "
                                f"{table.qualified} columns ({', '.join(table.primary_key)})",
                            )
                    except RowFailure as failure:
                        if not batcherrors:
                            raise server_error(failure.code, failure.text, offset=offset) from None
                        errors.append(batch_error(failure.code, failure.text, offset))
                        continue
                    session.pending.append((table, key, row))
                    own_keys.add(key)
                    inserted += 1
            except BaseException:
                del session.pending[mark:]  # statement-level rollback
                self.changed.notify_all()
                raise
        return inserted, errors

    def _wait_for_row_lock(
        self,
        session: Session,
        table: Table,
        key: tuple[object, ...],
        deadline: float | None,
        call_timeout_ms: int,
    ) -> None:
        """Block (releasing the server lock) while another session holds ``key`` uncommitted."""
        while (holder := self._holder(session, table, key)) is not None:
            if self._waits_for(holder, session):
                raise server_error(60, "deadlock detected while waiting for resource")
            if deadline is None:
                raise WouldHangError("a row lock wait with no call_timeout: it would wait for ever")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # The driver's break cancels the statement; the session itself stays usable.
                raise driver_error(driver_errors.ERR_CALL_TIMEOUT_EXCEEDED, timeout=call_timeout_ms)
            session.waiting_for = holder
            self.lock_waits += 1
            try:
                self.changed.wait(remaining)
            finally:
                session.waiting_for = None

    def _holder(self, session: Session, table: Table, key: tuple[object, ...]) -> Session | None:
        for other in self._sessions:
            if other is not session and any(t is table and k == key for (t, k, _) in other.pending):
                return other
        return None

    @staticmethod
    def _waits_for(holder: Session, session: Session) -> bool:
        seen: set[int] = set()
        current: Session | None = holder
        while current is not None and current.id not in seen:
            if current is session:
                return True
            seen.add(current.id)
            current = current.waiting_for
        return False

    def rollback_session(self, session: Session) -> None:
        """Undo the session's uncommitted rows and wake every session waiting on their locks."""
        with self.lock:
            session.pending.clear()
            self.changed.notify_all()

    @property
    def waiting_sessions(self) -> int:
        """Sessions blocked on another session's row lock right now."""
        with self.lock:
            return sum(1 for s in self._sessions if s.waiting_for is not None)

    def commit_session(self, session: Session) -> None:
        with self.lock:
            for table, key, row in session.pending:
                table.rows[key] = row
            session.pending.clear()
            self.commits += 1
            self.changed.notify_all()


@dataclass(eq=False)
class Session:
    id: int
    user: str
    alive: bool = True
    killed: bool = False
    closed: bool = False
    pending: list[tuple[Table, tuple[object, ...], dict[str, object]]] = field(default_factory=list)
    waiting_for: Session | None = None
    """The session whose uncommitted row this one is waiting on, if any."""


def _apply_fault(session: Session, fault: Fault) -> None:
    error = fault.error()
    details = error.args[0] if error.args else None
    if getattr(details, "is_session_dead", False):
        session.alive = False
    raise error
