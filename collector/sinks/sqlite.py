"""SQLite sink: the embedded default, so the service runs with no database server at all.

The table is created when missing (the only sink that does so; for the others the schema is the
operator's, printed by ``collector schema``). WAL mode lets readers query while the writer writes.
Timestamps are stored as fixed-width UTC text with microseconds (``2026-11-28 21:37:59.123456``),
which sorts and compares correctly and which SQLite's date functions read.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

from opentelemetry import trace

from collector.model import (
    MAX_TAG_NAME_LENGTH,
    MAX_TEXT_LENGTH,
    TagValue,
    split_value,
    to_utc,
)
from collector.sinks.base import (
    ColumnSpec,
    PermanentSinkError,
    RowError,
    SinkError,
    TagKey,
    TransientSinkError,
    WriteResult,
)
from collector.sinks.spans import insert_span, record_result

MAX_ROWS_PER_STATEMENT = 1000
"""Rows per INSERT statement (5 000 bound parameters, well under SQLite's default limit of 32 766)."""

SQLITE_MAX_INTEGER = 2**63 - 1
"""SQLite's INTEGER is 64-bit; larger integers go to the text column rather than being rounded."""

# Messages SQLite gives for states that pass by themselves: another writer holds the lock, the
# disk is full or momentarily unreadable.
_TRANSIENT_MARKERS = ("locked", "busy", "disk i/o", "full", "unable to open")


WAL_AUTOCHECKPOINT_PAGES = 10_000
"""Pages SQLite's log may hold before a commit copies them back into the database file (SQLite's
default is 1 000). Once each tag has a page of rows, every row of a batch changes a page of its
own (docs/benchmarks.md, "A table's steady state"), and the specification's plant changes 3 491
pages a second: with the default, each page went back to the file about once a second, and with
10 000 a page changed many times between two checkpoints is copied once. Measured into a table in
that state: 28 000 to 34 000 values/s against 18 000 to 24 000, and 12.3 to 12.7 % of one core at
the specification's load against 14.0 to 14.2 %. The price is a log file of up to 40 MB beside
the database (4 KiB pages), reused after each checkpoint."""


def configure_connection(conn: sqlite3.Connection) -> None:
    """The settings every connection that writes the table uses (the sink's, and the benchmarks'
    plain references, so that they compare like with like)."""
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed batch survives a power cut, which is what "written" promises.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")


def ddl(table: str = "TAG_DATA", columns: ColumnSpec | None = None) -> str:
    """The CREATE statements for the SQLite table and its timestamp index (FR-013 to FR-015)."""
    c = columns or ColumnSpec()
    index = f"{table.replace('.', '_')}_{c.timestamp}_ix"
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n"
        f"    {c.tag_name} TEXT NOT NULL CHECK (length({c.tag_name}) BETWEEN 1 AND {MAX_TAG_NAME_LENGTH}),\n"
        f"    {c.tag_value} NUMERIC,\n"
        f"    {c.tag_value_text} TEXT CHECK (length({c.tag_value_text}) <= {MAX_TEXT_LENGTH}),\n"
        f"    {c.timestamp} TEXT NOT NULL,\n"
        f"    {c.quality} TEXT NOT NULL CHECK ({c.quality} IN ('GOOD', 'BAD')),\n"
        f"    PRIMARY KEY ({c.tag_name}, {c.timestamp})\n"
        f");\n"
        f"CREATE INDEX IF NOT EXISTS {index} ON {table} ({c.timestamp});\n"
    )


def sqlite_timestamp(stamp: datetime) -> str:
    """``2026-11-28 21:37:59.123456``: fixed width, UTC, microseconds."""
    return to_utc(stamp).replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_row(value: TagValue, stamps: dict[datetime, str] | None = None) -> tuple[object, ...]:
    """The bind tuple for one value. ``stamps`` caches formatted timestamps across a batch: a poll's
    values share one collection time, and formatting it once per poll instead of once per value is
    most of the conversion cost."""
    number, text = split_value(value.value, max_integer=SQLITE_MAX_INTEGER)
    stamp = value.timestamp
    if stamps is None:
        return (value.tag_name, number, text, sqlite_timestamp(stamp), value.quality)
    formatted = stamps.get(stamp)
    if formatted is None:
        formatted = stamps[stamp] = sqlite_timestamp(stamp)
    return (value.tag_name, number, text, formatted, value.quality)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def sqlite_timestamps(stamps: Sequence[datetime]) -> dict[datetime, str]:
    """Each distinct timestamp of ``stamps`` spelled as :func:`sqlite_timestamp` does.

    A batch whose values each carry their own time (a replayed file from a plant that stamps every
    tag) has as many timestamps as values, and formatting them was the largest part of binding such
    a batch. When they are all in UTC (as intake makes them), see :func:`_utc_texts`."""
    distinct = list(set(stamps))
    if {stamp.tzinfo for stamp in distinct} == {UTC}:
        return _utc_texts(distinct)
    return {stamp: sqlite_timestamp(stamp) for stamp in distinct}


def _utc_texts(distinct: list[datetime]) -> dict[datetime, str]:
    """Distinct UTC timestamps spelled as :func:`sqlite_timestamp` does, each whole second once.

    ``isoformat`` of a datetime with a time zone costs about 0.9 us, most of it the offset. Stamps
    that share their second (a plant's tags stamped one by one within a poll) take the first one's
    ``2026-11-28 21:37:59.`` and only spell their microseconds: 1.14 -> 0.46 us per stamp. Stamps
    each in a second of their own cost a fifth more (1.36 us); stamps a poll shares are formatted
    once per batch either way."""
    heads: dict[int, str] = {}
    texts: dict[datetime, str] = {}
    for stamp in distinct:
        since = stamp - _EPOCH
        second = since.days * 86_400 + since.seconds
        head = heads.get(second)
        if head is None:
            text = texts[stamp] = stamp.isoformat(" ", "microseconds")[:26]
            heads[second] = text[:20]
        else:
            texts[stamp] = f"{head}{stamp.microsecond:06d}"
    return texts


def sqlite_columns(batch: Sequence[TagValue]) -> tuple[list[object], list[int], list[RowError]]:
    """The bind parameters of a whole batch, five per row and row after row, with the batch index
    of each bound row and the rows that cannot be bound.

    Built column by column: the five columns come from one ``zip``, each distinct timestamp is
    formatted once, and only the values that are not an ordinary float (texts, booleans, integers,
    none, NaN, the infinities, extreme magnitudes) go through :func:`split_value` one by one. The
    writers convert every row the database takes, and under overload they share the interpreter
    with the producers: the less Python each row needs, the more of its own rate the database keeps
    (docs/benchmarks.md, "Overload"). The result equals :func:`sqlite_row` applied to every value.
    """
    if not batch:
        return [], [], []
    names, values, stamps, qualities = zip(*batch, strict=True)
    numbers: list[object] = list(values)
    texts: list[object] = [None] * len(values)
    rejected: list[RowError] = []
    for index in [i for i, v in enumerate(values) if type(v) is not float or not 1e-130 <= abs(v) < 1e126]:
        try:
            numbers[index], texts[index] = split_value(values[index], max_integer=SQLITE_MAX_INTEGER)
        except (TypeError, ValueError) as exc:
            rejected.append(RowError(index, "INVALID", str(exc)))
    formatted = sqlite_timestamps(stamps)
    rows = zip(names, numbers, texts, map(formatted.__getitem__, stamps), qualities, strict=True)
    if not rejected:
        return list(chain.from_iterable(rows)), list(range(len(values))), rejected
    refused = {error.index for error in rejected}
    kept = [(index, row) for index, row in enumerate(rows) if index not in refused]
    return list(chain.from_iterable(row for _, row in kept)), [index for index, _ in kept], rejected


class SqliteSink:
    """Writes batches into a SQLite file; one connection, serialized by a lock (SQLite has one
    writer at a time anyway)."""

    system_name = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        table: str = "TAG_DATA",
        columns: ColumnSpec | None = None,
        busy_timeout_s: float = 5.0,
        create_table: bool = True,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.path = Path(path)
        self.table = table
        self._tracer = tracer if tracer is not None else trace.get_tracer(__name__)
        self._columns = columns or ColumnSpec()
        self._busy_timeout_s = busy_timeout_s
        self._create_table = create_table
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        c = self._columns
        names = ", ".join((c.tag_name, c.tag_value, c.tag_value_text, c.timestamp, c.quality))
        self._insert_into = f"INSERT INTO {table} ({names}) VALUES "
        self._on_conflict = f" ON CONFLICT ({c.tag_name}, {c.timestamp}) DO NOTHING"
        self._insert = self._insert_into + "(?, ?, ?, ?, ?)" + self._on_conflict
        self._inserts: dict[int, str] = {}
        self._rows_per_statement = MAX_ROWS_PER_STATEMENT
        self._probe = f"SELECT {names} FROM {table} WHERE 0"
        # No connection yet: the file may live on a disk that is not there at start, which is an
        # outage like any other. The first ping or write opens it.

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            # Five bound parameters per row; a SQLite built with a lower limit gets shorter statements.
            self._rows_per_statement = max(
                1, min(MAX_ROWS_PER_STATEMENT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 5)
            )
            configure_connection(conn)
            if self._create_table:
                conn.executescript(ddl(self.table, self._columns))
        except (sqlite3.Error, OSError) as exc:
            raise _classify(exc) from exc
        self._conn = conn
        return conn

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        result = WriteResult()
        params, positions, result.rejected = sqlite_columns(batch)
        if not positions:
            return result
        count = len(positions)
        with (
            self._lock,
            insert_span(
                self._tracer, system=self.system_name, table=self.table, parameter_sets=count
            ) as span,
        ):
            conn = self._connect()
            try:
                written = self._insert_all(conn, params, count)
            except sqlite3.IntegrityError:
                rows = [tuple(params[5 * i : 5 * i + 5]) for i in range(count)]
                written = self._insert_each(conn, rows, positions, result)
            except (sqlite3.Error, OSError) as exc:
                self._rollback(conn)
                raise _classify(exc) from exc
            result.written = written
            result.duplicates = count - written - _rejected_after(result, positions)
            record_result(span, result)
        return result

    def _insert_all(self, conn: sqlite3.Connection, params: list[object], count: int) -> int:
        """Insert every row with as few statements as the parameter limit allows. One multi-row
        INSERT rather than ``executemany``: each row of an ``executemany`` is a step that releases
        the GIL and has to take it back, and beside a busy producer thread every one of those
        hand-offs can wait a whole switch interval (docs/benchmarks.md, "Overload")."""
        before = conn.total_changes
        step = self._rows_per_statement
        if count <= step:
            # One statement is its own transaction (and atomic): no BEGIN and COMMIT to wait for.
            conn.execute(self._multi_row_insert(count), params)
            return conn.total_changes - before
        conn.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, count, step):
                rows = min(step, count - start)
                conn.execute(self._multi_row_insert(rows), params[5 * start : 5 * (start + rows)])
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        return conn.total_changes - before

    def _multi_row_insert(self, rows: int) -> str:
        statement = self._inserts.get(rows)
        if statement is None:
            values = ", ".join(["(?, ?, ?, ?, ?)"] * rows)
            statement = self._inserts[rows] = self._insert_into + values + self._on_conflict
        return statement

    def _insert_each(
        self,
        conn: sqlite3.Connection,
        rows: list[tuple[object, ...]],
        positions: list[int],
        result: WriteResult,
    ) -> int:
        """Isolate the rows SQLite refuses: insert one at a time in one transaction, so the good
        rows are committed and each bad one is reported with SQLite's reason."""
        before = conn.total_changes
        mark = len(result.rejected)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for row, index in zip(rows, positions, strict=True):
                try:
                    conn.execute(self._insert, row)
                except sqlite3.IntegrityError as exc:
                    result.rejected.append(RowError(index, _error_code(exc), str(exc)))
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            self._rollback(conn)
            del result.rejected[mark:]
            raise _classify(exc) from exc
        return conn.total_changes - before

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def ping(self) -> None:
        with self._lock:
            conn = self._connect()
            try:
                if self._create_table:
                    conn.executescript(ddl(self.table, self._columns))
                conn.execute(self._probe).fetchall()
                # Reading works while another process holds the write lock; taking the lock for a
                # moment makes the probe fail exactly when a write would.
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            except (sqlite3.Error, OSError) as exc:
                self._rollback(conn)
                raise _classify(exc) from exc

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()


class SqliteKeyLookup:
    """Which keys the table already holds, through a read-only connection.

    It never creates the file or the table: a database that does not exist yet holds no keys.
    """

    # Two bound parameters per key; SQLite before 3.32 allows 999 parameters per statement.
    _KEYS_PER_QUERY = 400

    def __init__(
        self, path: Path | str, *, table: str = "TAG_DATA", columns: ColumnSpec | None = None
    ) -> None:
        self.path = Path(path)
        self.table = table
        c = columns or ColumnSpec()
        # A join from the given keys, so that each is one search of the primary key; the simpler
        # "(tag_name, timestamp) IN (VALUES ...)" makes SQLite scan the whole table.
        self._select = (
            f"SELECT k.n, k.t FROM k JOIN {table} d ON d.{c.tag_name} = k.n AND d.{c.timestamp} = k.t"
        )
        self._conn: sqlite3.Connection | None = None

    def existing_keys(self, keys: Sequence[TagKey]) -> set[TagKey]:
        conn = self._connect()
        if conn is None or not keys:
            return set()
        wanted = {(name, sqlite_timestamp(stamp)): (name, stamp) for name, stamp in keys}
        stored: list[tuple[str, str]] = []
        pairs = list(wanted)
        try:
            for start in range(0, len(pairs), self._KEYS_PER_QUERY):
                chunk = pairs[start : start + self._KEYS_PER_QUERY]
                values = ", ".join(["(?, ?)"] * len(chunk))
                params = [part for pair in chunk for part in pair]
                query = f"WITH k(n, t) AS (VALUES {values}) {self._select}"
                stored.extend(conn.execute(query, params).fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc).lower():
                return set()
            raise _classify(exc) from exc
        except (sqlite3.Error, OSError) as exc:
            raise _classify(exc) from exc
        return {wanted[(name, stamp)] for name, stamp in stored if (name, stamp) in wanted}

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not self.path.exists():
            return None
        try:
            self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        except (sqlite3.Error, OSError) as exc:
            raise _classify(exc) from exc
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _rejected_after(result: WriteResult, positions: list[int]) -> int:
    """How many of the bound rows the database refused (as opposed to those refused before binding)."""
    if not result.rejected:
        return 0
    bound = set(positions)
    return sum(1 for error in result.rejected if error.index in bound)


def _error_code(exc: sqlite3.Error) -> str:
    return getattr(exc, "sqlite_errorname", None) or type(exc).__name__


def _classify(exc: BaseException) -> SinkError:
    message = str(exc)
    # SQLite's own result code (SQLITE_BUSY) when it gave one; else the exception's class.
    from_database = getattr(exc, "sqlite_errorname", None) is not None
    code = _error_code(exc) if isinstance(exc, sqlite3.Error) else type(exc).__name__
    lowered = message.lower()
    if isinstance(exc, OSError) or any(marker in lowered for marker in _TRANSIENT_MARKERS):
        return TransientSinkError(message, code=code, from_database=from_database)
    return PermanentSinkError(message, code=code, from_database=from_database)
