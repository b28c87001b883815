"""The contract between the writer and a database.

The writer knows nothing of Oracle, PostgreSQL or SQLite: it hands a batch to ``Sink.write`` and
gets back what happened to each row, or a :class:`SinkError` that says what kind of failure it was.
Each database is one module behind this Protocol.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from collector.model import TagValue


class ErrorKind(StrEnum):
    """What a failed call means for the batch, which decides what the writer does next.

    TRANSIENT: the database could not be reached, or the outcome is unknown (a lost
    acknowledgement). Retry: the primary key makes a repeated insert land as duplicates.
    PERMANENT: the schema or the credentials are wrong. Retrying will not help until an operator
    acts; the data goes to backup, the circuit opens and the sink is re-checked periodically.
    Row-level problems are not errors at all: they come back in :class:`WriteResult.rejected`.
    """

    TRANSIENT = "transient"
    PERMANENT = "permanent"


class SinkError(Exception):
    """A write or probe failed as a whole.

    ``code`` names the failure: the database's own error code (``ORA-01017``, SQLSTATE ``28P01``,
    ``SQLITE_BUSY``) when ``from_database`` says the database or its driver reported it, else one
    of the collector's (``CALL_TIMEOUT``, ``SINK_MISCOUNT``). ``credentials`` marks a refused login
    (wrong password, locked or expired account): permanent, and worth not repeating often, since
    every attempt counts against the account's failed-login limit.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        code: str | None = None,
        from_database: bool = False,
        credentials: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.from_database = from_database and code is not None
        self.credentials = credentials

    @property
    def transient(self) -> bool:
        return self.kind is ErrorKind.TRANSIENT

    @property
    def database_code(self) -> str | None:
        """The database's own code, for ``db.response.status_code``; None for the collector's."""
        return self.code if self.from_database else None

    def describe(self) -> str:
        return f"{self.code}: {self}" if self.code else str(self)


class TransientSinkError(SinkError):
    def __init__(self, message: str, *, code: str | None = None, from_database: bool = False) -> None:
        super().__init__(message, kind=ErrorKind.TRANSIENT, code=code, from_database=from_database)


class PermanentSinkError(SinkError):
    def __init__(
        self, message: str, *, code: str | None = None, from_database: bool = False, credentials: bool = False
    ) -> None:
        super().__init__(
            message, kind=ErrorKind.PERMANENT, code=code, from_database=from_database, credentials=credentials
        )


IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$#]{0,127}$")
"""A plain SQL identifier every supported database accepts unquoted: letters, digits, ``_$#``."""


class InvalidColumnName(ValueError):
    """A configured column name that is not a plain SQL identifier; ``field`` names the key."""

    def __init__(self, field: str, value: object) -> None:
        super().__init__(f"{value!r} is not a plain SQL identifier")
        self.field = field


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """The target table's column names (FR-013's by default).

    The one type for them: the configuration's ``sink.columns`` is a ColumnSpec, and every sink
    takes one. Each name must be a plain SQL identifier, so that it can be written into a
    statement without quoting tricks; a bad one raises :class:`InvalidColumnName` naming the key.
    """

    tag_name: str = "tag_name"
    tag_value: str = "tag_value"
    tag_value_text: str = "tag_value_text"
    timestamp: str = "timestamp"
    quality: str = "quality"

    def __post_init__(self) -> None:
        for key in ("tag_name", "tag_value", "tag_value_text", "timestamp", "quality"):
            value = getattr(self, key)
            if not isinstance(value, str) or not IDENTIFIER.match(value):
                raise InvalidColumnName(key, value)

    def names(self) -> tuple[str, str, str, str, str]:
        return (self.tag_name, self.tag_value, self.tag_value_text, self.timestamp, self.quality)


@dataclass(frozen=True, slots=True)
class RowError:
    """One row of a batch that the database refused; ``index`` is its position in the batch."""

    index: int
    code: str
    message: str


@dataclass(slots=True)
class WriteResult:
    """What happened to every row of one batch.

    ``written + duplicates + len(rejected)`` equals the batch size: a sink accounts for every row.
    Duplicates are rows whose (tag_name, timestamp) key was already stored (FR-016), including
    rows that an earlier attempt committed before its acknowledgement was lost.
    """

    written: int = 0
    duplicates: int = 0
    rejected: list[RowError] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.written + self.duplicates + len(self.rejected)


WRITE_ATTEMPT: ContextVar[int] = ContextVar("collector_write_attempt", default=1)
"""The writer's attempt number (1 = first try) for the batch a sink is writing, set around each
:meth:`Sink.write` call, so that a sink can put it on its own trace span without a wider signature."""


@runtime_checkable
class Sink(Protocol):
    """A database the writer can put batches into. Implementations are safe to call from
    several writer threads at once."""

    system_name: str
    """The OpenTelemetry ``db.system.name`` value: "sqlite", "postgresql", "oracle.db"."""

    table: str
    """The table the rows go to, for logs and trace attributes."""

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        """Insert the batch; commit the good rows; report every row's outcome.

        Raises :class:`SinkError` when the batch as a whole could not be written.
        """
        ...

    def ping(self) -> None:
        """Check that a write would be accepted now (reachable, logged in, table usable).

        Raises :class:`SinkError` with the kind of failure; returns when the sink is healthy.
        """
        ...

    def close(self) -> None:
        """Release connections. Safe to call twice."""
        ...


TagKey = tuple[str, datetime]
"""A row's primary key: (tag_name, timestamp), the timestamp an aware UTC datetime."""


@runtime_checkable
class KeyLookup(Protocol):
    """Read-only: which keys a table already holds. Optional for a sink module (it offers one
    through ``key_lookup(config)``); ``collector replay --dry-run`` uses it to say how many rows of
    a backup file are already stored without writing anything."""

    def existing_keys(self, keys: Sequence[TagKey]) -> set[TagKey]:
        """The subset of ``keys`` already stored (the same tuples as given).

        Raises :class:`SinkError` when the database cannot answer.
        """
        ...

    def close(self) -> None:
        """Release the connection. Safe to call twice."""
        ...
