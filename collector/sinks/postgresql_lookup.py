"""Which keys a PostgreSQL table already holds, for ``collector replay --dry-run``.

One connection in a read-only session, and one statement per batch that joins the batch's keys
(unnested arrays) to the primary key::

    SELECT k.n, k.t FROM unnest($1::text[], $2::timestamptz[]) AS k(n, t)
        JOIN tag_data AS d ON d.tag_name = k.n AND d.timestamp = k.t

Every wait is bounded as the sink's are (:mod:`collector.sinks.postgresql_session`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import psycopg
from psycopg import sql

from collector.model import to_utc
from collector.sinks.base import ColumnSpec, TagKey
from collector.sinks.postgresql_errors import classify
from collector.sinks.postgresql_schema import sql_identifier
from collector.sinks.postgresql_session import CallDeadline, connect_kwargs
from collector.sinks.watchdog import Guard


class PostgresKeyLookup:
    """The subset of given keys that the table holds (committed rows only); read-only."""

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "TAG_DATA",
        columns: ColumnSpec | None = None,
        connect_timeout_s: float = 5.0,
        call_timeout_s: float = 10.0,
    ) -> None:
        c = columns or ColumnSpec()
        self.table = table
        self._dsn = dsn
        self._connect_kwargs = connect_kwargs(
            dsn,
            connect_timeout_s=connect_timeout_s,
            call_timeout_s=call_timeout_s,
            settings=["-c default_transaction_read_only=on"],
        )
        self._deadline = CallDeadline(call_timeout_s, thread_name="postgresql-lookup-watchdog")
        self._select = sql.SQL(
            "SELECT k.n, k.t FROM unnest(%b::text[], %b::timestamptz[]) AS k(n, t) "
            "JOIN {table} AS d ON d.{name} = k.n AND d.{stamp} = k.t"
        ).format(
            table=sql_identifier(table), name=sql_identifier(c.tag_name), stamp=sql_identifier(c.timestamp)
        )
        self._conn: psycopg.Connection[Any] | None = None

    def existing_keys(self, keys: Sequence[TagKey]) -> set[TagKey]:
        if not keys:
            return set()
        conn = self._connect()
        names = [name for name, _ in keys]
        stamps = [to_utc(stamp) for _, stamp in keys]
        guard: Guard | None = None
        try:
            with self._deadline.guard(conn) as guard:
                found = {(name, stamp) for name, stamp in conn.execute(self._select, [names, stamps])}
        except psycopg.Error as exc:
            self._drop()
            raise self._deadline.error(exc, guard) from exc
        return {key for key in keys if (key[0], to_utc(key[1])) in found}

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            try:
                self._conn = psycopg.connect(self._dsn, **self._connect_kwargs)
            except psycopg.Error as exc:
                raise classify(exc) from exc
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        self._drop()
        self._deadline.close()
