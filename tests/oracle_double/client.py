"""What the sink holds: ``oracledb.ConnectionPool``, ``Connection`` and ``Cursor`` as the thin
driver behaves, each call going through the server's round trip."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import oracledb
from oracledb import errors as driver_errors

from tests.oracle_double.binding import bind_all
from tests.oracle_double.errors import WouldHangError, driver_error
from tests.oracle_double.sql import DICTIONARY

MAX_BATCH_ERRORS = 65_535
"""python-oracledb (thin) reads at most this many batch errors back from one executemany."""

if TYPE_CHECKING:
    from tests.oracle_double.server import FakeOracle, Session


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
        self._idle: list[Session] = []
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

    def acquire(self, *, standalone: bool = False) -> FakeConnection:
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
                session = self.db.open_session(self._user, self._password, self._dsn)
            except BaseException:
                self._give_back(None)
                raise
        self.acquired += 1
        return FakeConnection(self, session, standalone=standalone)

    def _give_back(self, session: Session | None) -> None:
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
        self.db.rollback_session(session)
        self._give_back(session)

    def drop(self, connection: FakeConnection) -> None:
        self._verify_open()
        session = connection._detach()
        self.db.rollback_session(session)
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
    """A session as the driver hands it out: from a pool, or standalone (``oracledb.connect``)."""

    def __init__(self, pool: FakePool, session: Session, *, standalone: bool = False) -> None:
        self._standalone = standalone
        self._pool = pool
        self._db = pool.db
        self._session: Session | None = session
        self._call_timeout_ms = 0
        self.autocommit = False

    def _live(self) -> Session:
        if self._session is None:
            raise driver_error(driver_errors.ERR_NOT_CONNECTED)
        return self._session

    def _detach(self) -> Session:
        session = self._live()
        self._session = None
        return session

    def _trip(self, operation: str) -> Session:
        session = self._live()
        self._db.round_trip(session, operation, self._call_timeout_ms)
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
        with self._db.lock:
            self._db.call_timeouts.append(value)

    def is_healthy(self) -> bool:
        session = self._session
        return session is not None and session.alive and not session.killed and self._db.up

    def cursor(self) -> FakeCursor:
        self._live()
        return FakeCursor(self)

    def ping(self) -> None:
        session = self._trip("ping")
        self._db.after_call(session, "ping")

    def commit(self) -> None:
        session = self._trip("commit")
        self._db.commit_session(session)
        self._db.after_call(session, "commit")

    def rollback(self) -> None:
        session = self._trip("rollback")
        self._db.rollback_session(session)

    def close(self) -> None:
        self._pool.release(self)
        if self._standalone:
            self._pool.close()  # a standalone connection's session ends with it


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
        if DICTIONARY.match(statement):
            return
        self._db.insert_target(session, statement)

    def execute(
        self, statement: str, parameters: dict[str, object] | Sequence[object] | None = None
    ) -> FakeCursor:
        self._verify()
        if parameters is None or isinstance(parameters, dict):
            session = self.connection._trip("execute")
            self._results = self._db.dictionary(session, statement, dict(parameters or {}))
        else:
            # Positional binds go through the client's bind rules, as for executemany.
            bound, _types = bind_all(self._declared, [parameters], supports_bool=self._db.supports_bool)
            session = self.connection._trip("execute")
            self._results = self._db.select_keys(session, statement, bound[0] if bound else [])
        self.rowcount = 0
        self._declared = []
        self._db.after_call(session, "execute")
        return self

    def fetchone(self) -> tuple[object, ...] | None:
        self._verify()
        if not self._results:
            return None
        self.rowcount += 1
        return self._results.pop(0)

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
        bound, types = bind_all(self._declared, parameters, supports_bool=self._db.supports_bool)
        session = self.connection._trip("executemany")
        with self._db.lock:
            self._db.executemany_calls += 1
            self._db.bind_types.append(types)
        table, names = self._db.insert_target(session, statement)
        if bound and len(bound[0]) != len(names):
            raise driver_error(
                driver_errors.ERR_WRONG_NUMBER_OF_POSITIONAL_BINDS,
                expected_num=len(names),
                actual_num=len(bound[0]),
            )
        inserted, errors = self._db.insert_rows(
            session, table, names, bound, batcherrors, call_timeout_ms=self.connection._call_timeout_ms
        )
        self._declared = []
        if len(errors) > MAX_BATCH_ERRORS:
            # The server has run every row (the good ones wait in the transaction); the thin
            # driver cannot read back that many errors and fails the call.
            raise driver_error(driver_errors.ERR_TOO_MANY_BATCH_ERRORS)
        self.rowcount = inserted
        self._batch_errors = errors
        self._db.after_call(session, "executemany")

    def getbatcherrors(self) -> list[Any]:
        self._verify()
        return list(self._batch_errors)
