"""Which keys an Oracle table already holds, for ``collector replay --dry-run``.

One pooled session (a pool of one, created on first use, so that every wait has the sink's
deadlines), and one query per 500 keys::

    SELECT "TAG_NAME", "TIMESTAMP" FROM "TAG_DATA" WHERE ("TAG_NAME", "TIMESTAMP") IN ((:1, :2), ...)

Oracle answers a multi-column IN list with one primary-key lookup per pair. The timestamps are
declared TIMESTAMP with ``setinputsizes`` and bound as naive UTC, as the sink binds them: a
``datetime`` left to the driver binds as DATE and drops the microseconds, and no key would match.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import oracledb

from collector.model import MAX_TAG_NAME_LENGTH, to_utc
from collector.sinks.base import ColumnSpec, TagKey
from collector.sinks.oracle_errors import classify_exception
from collector.sinks.oracle_schema import TableName, quote_identifier

KEYS_PER_QUERY = 500
"""Oracle allows at most 1 000 expressions in an IN list."""


class OracleKeyLookup:
    """The subset of given keys that the table holds (committed rows only); read-only."""

    def __init__(
        self,
        *,
        dsn: str,
        user: str,
        password: str,
        table: str = "TAG_DATA",
        columns: ColumnSpec | None = None,
        connect_timeout_s: float = 5.0,
        call_timeout_s: float = 10.0,
        pool_wait_timeout_s: float = 5.0,
        driver: Any = None,
    ) -> None:
        c = columns or ColumnSpec()
        name, stamp = quote_identifier(c.tag_name), quote_identifier(c.timestamp)
        self.table = table
        self._select = f"SELECT {name}, {stamp} FROM {TableName.parse(table).sql} WHERE ({name}, {stamp}) IN "
        self._pool_args: dict[str, Any] = {
            "user": user,
            "password": password,
            "dsn": dsn,
            "min": 1,
            "max": 1,
            "increment": 1,
            "getmode": oracledb.POOL_GETMODE_TIMEDWAIT,
            "wait_timeout": max(1, round(pool_wait_timeout_s * 1000)),
            "tcp_connect_timeout": connect_timeout_s,
        }
        self._call_timeout_ms = max(1, round(call_timeout_s * 1000))
        self._driver: Any = driver if driver is not None else oracledb
        self._pool: Any = None

    def existing_keys(self, keys: Sequence[TagKey]) -> set[TagKey]:
        if not keys:
            return set()
        # Thin mode ignores tzinfo: the table holds UTC wall-clock times, so compare those.
        wanted = {(name, to_utc(stamp).replace(tzinfo=None)): (name, stamp) for name, stamp in keys}
        pairs = list(wanted)
        found: list[tuple[str, Any]] = []
        try:
            pool = self._get_pool()
            conn = pool.acquire()
        except oracledb.Error as exc:
            raise classify_exception(exc).sink_error() from exc
        dead = False
        try:
            conn.call_timeout = self._call_timeout_ms
            for start in range(0, len(pairs), KEYS_PER_QUERY):
                chunk = pairs[start : start + KEYS_PER_QUERY]
                found.extend(self._query(conn, chunk))
        except oracledb.Error as exc:
            failure = classify_exception(exc)
            dead = failure.session_dead
            raise failure.sink_error() from exc
        finally:
            with contextlib.suppress(oracledb.Error):
                (pool.drop if dead else pool.release)(conn)
        return {wanted[key] for key in found if key in wanted}

    def _query(self, conn: Any, chunk: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        placeholders = ", ".join(f"(:{2 * i + 1}, :{2 * i + 2})" for i in range(len(chunk)))
        cursor = conn.cursor()
        try:
            cursor.setinputsizes(*([MAX_TAG_NAME_LENGTH, oracledb.DB_TYPE_TIMESTAMP] * len(chunk)))
            cursor.execute(f"{self._select}({placeholders})", [part for pair in chunk for part in pair])
            return [(str(row[0]), row[1]) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def _get_pool(self) -> Any:
        if self._pool is None:
            self._pool = self._driver.create_pool(**self._pool_args)
        return self._pool

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(oracledb.Error):
                pool.close(force=True)
