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

from tests.oracle_double.client import FakePool
from tests.oracle_double.errors import (
    WouldHangError,
    batch_error,
    connection_lost,
    connection_refused,
    driver_error,
    instance_starting,
    invalid_login,
    server_error,
    session_killed,
)
from tests.oracle_double.schema import Catalog, RowFailure, Table, can, dictionary_value, server_row
from tests.oracle_double.sql import DICTIONARY, INSERT, KEY_SELECT, host_port_of, ident, service_of, split_top


@dataclass
class Fault:
    operation: str
    """connect, ping, execute, parse, executemany, commit, rollback."""
    error: Callable[[], BaseException]
    times: int = 1
    after: bool = False
    """Raise after the operation took effect (a commit applied whose acknowledgement is lost)."""


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
        self.lock = threading.RLock()
        self.users = {name.upper(): secret for name, secret in (users or {"APP": "app-secret"}).items()}
        self.service_name = service_name
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

    # --- the driver module's surface

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
        """The instance stops answering: new connections are refused, open sessions are lost."""
        with self.lock:
            self.up = False

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

    def connect(self, user: str | None, password: str | None, dsn: str | None) -> Session:
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
            if user is None or self.users.get(user.upper()) != password:
                raise invalid_login()
            session = Session(next(_id_counter), user.upper())
            self._sessions.append(session)
            self.connects += 1
            return session

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
        self, session: Session, table: Table, names: list[str], rows: list[list[object]], batcherrors: bool
    ) -> tuple[int, list[Any]]:
        inserted = 0
        errors: list[Any] = []
        with self.lock:
            pending_keys = {key for other in self._sessions for (t, key, _) in other.pending if t is table}
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
                    if key in table.rows or key in pending_keys:
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
                pending_keys.add(key)
                inserted += 1
        return inserted, errors

    def commit_session(self, session: Session) -> None:
        with self.lock:
            for table, key, row in session.pending:
                table.rows[key] = row
            session.pending.clear()
            self.commits += 1


@dataclass(eq=False)
class Session:
    id: int
    user: str
    alive: bool = True
    killed: bool = False
    closed: bool = False
    pending: list[tuple[Table, tuple[object, ...], dict[str, object]]] = field(default_factory=list)


def _apply_fault(session: Session, fault: Fault) -> None:
    error = fault.error()
    details = error.args[0] if error.args else None
    if getattr(details, "is_session_dead", False):
        session.alive = False
    raise error
