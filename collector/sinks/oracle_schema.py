"""The Oracle table: the DDL an operator creates (FR-013 to FR-015), and the check of a live table.

Identifiers are written quoted and upper-case (``"TAG_DATA"."TIMESTAMP"``). Upper-case quoted is
exactly what Oracle makes of an unquoted name, so a table created without quotes matches, and the
quotes keep keywords safe: ``timestamp`` is an Oracle keyword, and an operator may rename a column
to a reserved word (``date``, ``level``) without the statements breaking.

At start-up (and on every probe) the sink reads the table's columns from the data dictionary and
:func:`check_columns` turns them into a :class:`TableLayout`: which value columns exist and of what
type, and the INSERT that fits them. A missing table or column, or a column whose type would alter
the data (a DATE timestamp loses microseconds and folds distinct keys into duplicates), fails with
a message that names it.

Lengths are read as Oracle counts them. ``CHAR_USED`` says whether a text column was declared in
characters (``C``) or bytes (``B``, the default ``NLS_LENGTH_SEMANTICS``), ``CHAR_LENGTH`` is the
declared length and ``DATA_LENGTH`` the bytes it may take; and whatever the semantics, a VARCHAR2
holds at most 4 000 bytes with ``MAX_STRING_SIZE=STANDARD``. The layout carries each text column's
:class:`TextLimit`, and the sink refuses a value over it before sending, with the reason. Byte
lengths are UTF-8 lengths: the database character set is taken to be AL32UTF8, the default since
Oracle 12.2 and the compose image's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from collector.model import MAX_TAG_NAME_LENGTH, MAX_TEXT_LENGTH, utf8_length
from collector.sinks.base import IDENTIFIER, ColumnSpec, PermanentSinkError

QUALITY_LENGTH = 20
"""FR-013: ``quality`` is VARCHAR2(20)."""

TIMESTAMP_PRECISION = 6
"""Fractional-second digits kept: microseconds, as the collection timestamps carry."""

MAX_STRING_BYTES = 4000
"""What a VARCHAR2 holds with ``MAX_STRING_SIZE=STANDARD`` (the default), in any semantics."""

UTF8_MAX_BYTES_PER_CHAR = 4

TEXT_TYPES = frozenset({"VARCHAR2", "NVARCHAR2", "CHAR", "NCHAR"})
NATIONAL_TYPES = frozenset({"NVARCHAR2", "NCHAR"})
"""Always counted in characters (of the national character set), never by the UTF-8 rule."""
NUMBER_TYPES = frozenset({"NUMBER", "FLOAT"})

DICTIONARY_COLUMNS = (
    "column_name",
    "data_type",
    "char_length",
    "data_precision",
    "data_scale",
    "nullable",
    "default_length",
    "char_used",
    "data_length",
)
"""What the check reads about each column, in this order."""


def quote_identifier(name: str) -> str:
    """``name`` as a quoted Oracle identifier, upper-cased like an unquoted one."""
    if not IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain SQL identifier")
    return f'"{name.upper()}"'


@dataclass(frozen=True, slots=True)
class TableName:
    """A table name as configured (``TAG_DATA`` or ``APP.TAG_DATA``), resolved for Oracle."""

    owner: str | None
    name: str

    @classmethod
    def parse(cls, table: str) -> TableName:
        parts = table.split(".")
        if len(parts) > 2:
            raise ValueError(f"{table!r} is not a table name (optionally schema.table)")
        for part in parts:
            quote_identifier(part)  # validates
        if len(parts) == 2:
            return cls(parts[0].upper(), parts[1].upper())
        return cls(None, parts[0].upper())

    @property
    def sql(self) -> str:
        name = f'"{self.name}"'
        return f'"{self.owner}".{name}' if self.owner else name

    def qualified(self, prefix: str) -> str:
        """A name for a dependent object (constraint, index) in the table's schema."""
        name = f'"{prefix}"'
        return f'"{self.owner}".{name}' if self.owner else name

    def __str__(self) -> str:
        return f"{self.owner}.{self.name}" if self.owner else self.name


def ddl_statements(table: str = "TAG_DATA", columns: ColumnSpec | None = None) -> list[str]:
    """The CREATE TABLE and CREATE INDEX statements, without terminators (for a driver)."""
    c = columns or ColumnSpec()
    target = TableName.parse(table)
    q = quote_identifier
    width = max(len(q(name)) for name in c.names())

    def line(name: str, definition: str) -> str:
        return f"    {q(name).ljust(width)} {definition}"

    create = "\n".join(
        [
            f"CREATE TABLE {target.sql} (",
            line(c.tag_name, f"VARCHAR2({MAX_TAG_NAME_LENGTH} CHAR) NOT NULL") + ",",
            line(c.tag_value, "NUMBER") + ",",
            line(c.tag_value_text, f"VARCHAR2({MAX_TEXT_LENGTH} CHAR)") + ",",
            line(c.timestamp, f"TIMESTAMP({TIMESTAMP_PRECISION}) NOT NULL") + ",",
            line(c.quality, f"VARCHAR2({QUALITY_LENGTH} CHAR) NOT NULL") + ",",
            f'    CONSTRAINT "{target.name}_PK" PRIMARY KEY ({q(c.tag_name)}, {q(c.timestamp)}),',
            f"    CONSTRAINT \"{target.name}_QUALITY_CK\" CHECK ({q(c.quality)} IN ('GOOD', 'BAD'))",
            ")",
        ]
    )
    index_name = f"{target.name}_{c.timestamp.upper()}_IX"
    index = f"CREATE INDEX {target.qualified(index_name)} ON {target.sql} ({q(c.timestamp)})"
    return [create, index]


def ddl(table: str = "TAG_DATA", columns: ColumnSpec | None = None) -> str:
    """The DDL as a SQL*Plus script: the table with its primary key (FR-014) and the timestamp
    index (FR-015). Values are UTC; the collector writes naive UTC timestamps."""
    header = (
        "-- PLC tag collector: the Oracle table (timestamps are UTC, microseconds kept).\n"
        "-- Numbers go to the NUMBER column; text, and numbers NUMBER cannot hold exactly\n"
        "-- (NaN, infinities, more than 38 digits), to the text column.\n"
        "-- Lengths are in characters (CHAR), but with MAX_STRING_SIZE=STANDARD a VARCHAR2 holds\n"
        "-- at most 4000 bytes: the collector accepts text of at most 4000 bytes in UTF-8.\n"
    )
    return header + "".join(f"{statement};\n" for statement in ddl_statements(table, columns))


IDENTITY_ATTRIBUTES = ("db.namespace", "oracle.db.name", "oracle.db.instance.name", "oracle.db.pdb")
"""The span attributes :data:`IDENTITY_QUERY` answers, in its column order."""

IDENTITY_QUERY = (
    "SELECT SYS_CONTEXT('USERENV', 'DB_UNIQUE_NAME'), SYS_CONTEXT('USERENV', 'DB_NAME'), "
    "SYS_CONTEXT('USERENV', 'INSTANCE_NAME'), SYS_CONTEXT('USERENV', 'CON_NAME') FROM DUAL"
)
"""The database's names as the OpenTelemetry Oracle conventions ask for them: ``db.namespace`` is
DB_UNIQUE_NAME; any session may read its own USERENV context, no privilege needed."""


def dictionary_query(target: TableName) -> tuple[str, dict[str, str]]:
    """The data-dictionary query for the table's columns, and its binds. An unqualified table is
    looked up among the connected user's own tables, as an unqualified INSERT resolves it."""
    select = ", ".join(DICTIONARY_COLUMNS)
    if target.owner is None:
        sql = f"SELECT {select} FROM user_tab_columns WHERE table_name = :table_name ORDER BY column_id"
        return sql, {"table_name": target.name}
    sql = (
        f"SELECT {select} FROM all_tab_columns WHERE owner = :owner AND table_name = :table_name "
        "ORDER BY column_id"
    )
    return sql, {"owner": target.owner, "table_name": target.name}


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    """One row of the data dictionary, as :data:`DICTIONARY_COLUMNS` reads it."""

    name: str
    data_type: str
    char_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    nullable: bool = True
    has_default: bool = False
    char_used: str | None = None
    """``C`` for a length declared in characters, ``B`` in bytes (None: not a text column)."""
    data_length: int | None = None
    """The most bytes a value may take."""

    @classmethod
    def from_row(cls, row: Sequence[object]) -> ColumnInfo:
        name, data_type, char_length, precision, scale, nullable, default_length, char_used, data_length = row

        def number(value: object) -> int | None:
            return None if value is None else int(str(value))

        return cls(
            name=str(name),
            data_type=str(data_type),
            char_length=number(char_length),
            precision=number(precision),
            scale=number(scale),
            nullable=str(nullable) != "N",
            has_default=bool(number(default_length)),
            char_used=None if char_used is None else str(char_used),
            data_length=number(data_length),
        )

    def text_limit(self, table: TableName) -> TextLimit:
        """How much text the column holds, as Oracle counts it."""
        declared = self.char_length or self.data_length or MAX_STRING_BYTES
        where = f"{table}.{self.name}"
        if self.data_type in NATIONAL_TYPES:
            return TextLimit(where, chars=declared, bytes=None)
        if self.char_used == "C":
            stored = min(self.data_length or MAX_STRING_BYTES, MAX_STRING_BYTES)
            return TextLimit(where, chars=declared, bytes=stored)
        return TextLimit(where, chars=None, bytes=min(self.data_length or declared, MAX_STRING_BYTES))


@dataclass(frozen=True, slots=True)
class TextLimit:
    """What one text column holds: at most ``chars`` characters (a length declared in CHAR) and
    at most ``bytes`` bytes (always, for VARCHAR2: the declared BYTE length, or the 4 000 bytes of
    ``MAX_STRING_SIZE=STANDARD`` for a CHAR length)."""

    column: str
    chars: int | None
    bytes: int | None

    @property
    def safe_length(self) -> int:
        """Any text of at most this many characters fits, whatever its characters."""
        by_chars = self.chars if self.chars is not None else MAX_STRING_BYTES
        by_bytes = self.bytes // UTF8_MAX_BYTES_PER_CHAR if self.bytes is not None else by_chars
        return min(by_chars, by_bytes)

    def refusal(self, text: str) -> str | None:
        """Why the column cannot hold ``text`` (Oracle's ORA-12899, said before sending), or None."""
        length = len(text)
        if self.chars is not None and length > self.chars:
            return (
                f"value too large for column {self.column} "
                f"(actual: {length} characters, maximum: {self.chars} characters)"
            )
        if self.bytes is not None and length > self.bytes // UTF8_MAX_BYTES_PER_CHAR:
            size = utf8_length(text)
            if size > self.bytes:
                return (
                    f"value too large for column {self.column} "
                    f"(actual: {size} bytes in UTF-8, maximum: {self.bytes} bytes)"
                )
        return None

    def describe(self) -> str:
        if self.chars is not None and self.bytes is not None:
            return f"{self.chars} characters and at most {self.bytes} bytes"
        if self.chars is not None:
            return f"{self.chars} characters"
        return f"{self.bytes} bytes"


class ValueMode(StrEnum):
    """Where values go, decided by the table's columns."""

    SPLIT = "split"
    """``tag_value`` NUMBER and ``tag_value_text`` VARCHAR2: numbers and text apart (the design)."""
    NUMBER_ONLY = "number_only"
    """Only a NUMBER ``tag_value``: a value that needs text is rejected with the reason."""
    TEXT_ONLY = "text_only"
    """``tag_value`` is VARCHAR2: every value is written as its exact text."""


@dataclass(frozen=True, slots=True)
class TableLayout:
    """How batches are written to the table the check found."""

    table: TableName
    mode: ValueMode
    columns: tuple[str, ...]
    """The INSERT's columns, upper-case, in bind order."""
    binds: tuple[str, ...]
    """The kind of each bind, in order: ``name``, ``number``, ``text``, ``timestamp``, ``quality``."""
    warnings: tuple[str, ...] = ()
    """Things an operator should know that do not stop writing (a NUMBER with a scale rounds)."""
    limits: tuple[TextLimit | None, ...] = ()
    """Each bind's text limit (None for a number or a timestamp), in bind order."""

    @property
    def insert_sql(self) -> str:
        names = ", ".join(f'"{name}"' for name in self.columns)
        marks = ", ".join(f":{i}" for i in range(1, len(self.columns) + 1))
        return f"INSERT INTO {self.table.sql} ({names}) VALUES ({marks})"

    def checked_binds(self) -> list[tuple[int, TextLimit]]:
        """The bind positions whose text needs checking, with their limits: a column that holds
        anything the collector accepts (the tag name in CHAR semantics) needs no check per row."""
        accepted = {"name": MAX_TAG_NAME_LENGTH, "text": MAX_TEXT_LENGTH, "quality": QUALITY_LENGTH}
        return [
            (position, limit)
            for position, (kind, limit) in enumerate(zip(self.binds, self.limits, strict=False))
            if limit is not None and limit.safe_length < accepted.get(kind, MAX_TEXT_LENGTH)
        ]


def _design_limits(
    table: TableName, columns: tuple[str, ...], binds: tuple[str, ...]
) -> tuple[TextLimit | None, ...]:
    """The limits of the columns as :func:`ddl` declares them."""
    declared = {"name": MAX_TAG_NAME_LENGTH, "text": MAX_TEXT_LENGTH, "quality": QUALITY_LENGTH}
    limits: list[TextLimit | None] = []
    for name, kind in zip(columns, binds, strict=True):
        if kind in declared:
            info = ColumnInfo(
                name,
                "VARCHAR2",
                declared[kind],
                char_used="C",
                data_length=min(declared[kind] * UTF8_MAX_BYTES_PER_CHAR, MAX_STRING_BYTES),
            )
            limits.append(info.text_limit(table))
        else:
            limits.append(None)
    return tuple(limits)


def layout_for(table: str, columns: ColumnSpec, mode: ValueMode = ValueMode.SPLIT) -> TableLayout:
    """The layout of a table as :func:`ddl` creates it (or its number-only/text-only variants)."""
    c = columns
    cols: tuple[str, ...]
    binds: tuple[str, ...]
    if mode is ValueMode.SPLIT:
        cols = (c.tag_name, c.tag_value, c.tag_value_text, c.timestamp, c.quality)
        binds = ("name", "number", "text", "timestamp", "quality")
    elif mode is ValueMode.NUMBER_ONLY:
        cols = (c.tag_name, c.tag_value, c.timestamp, c.quality)
        binds = ("name", "number", "timestamp", "quality")
    else:
        cols = (c.tag_name, c.tag_value, c.timestamp, c.quality)
        binds = ("name", "text", "timestamp", "quality")
    target = TableName.parse(table)
    upper = tuple(n.upper() for n in cols)
    return TableLayout(target, mode, upper, binds, limits=_design_limits(target, upper, binds))


def check_columns(table: str, columns: ColumnSpec, found: Iterable[ColumnInfo]) -> TableLayout:
    """Turn the dictionary's view of the table into a layout, or explain what is wrong.

    Raises :class:`PermanentSinkError` naming the table or the column: the table is missing, a
    required column is missing, or a column's type would make the database alter or refuse
    every value. Nothing here needs the database; it is a pure function of the dictionary rows.
    """
    target = TableName.parse(table)
    by_name = {info.name: info for info in found}
    if not by_name:
        raise PermanentSinkError(
            f"table {target} does not exist or is not visible to this user; create it with the "
            "statements printed by `collector schema --dialect oracle`",
            code="ORA-00942",
        )

    def require(name: str) -> ColumnInfo:
        info = by_name.get(name.upper())
        if info is None:
            raise PermanentSinkError(
                f"table {target} has no column {name.upper()} (configured as sink.columns); "
                f"it has {', '.join(sorted(by_name))}",
                code="ORA-00904",
            )
        return info

    def wrong_type(info: ColumnInfo, wanted: str) -> PermanentSinkError:
        return PermanentSinkError(
            f"column {target}.{info.name} is {info.data_type}; the collector needs {wanted}",
            code="ORA-00932",
        )

    tag_name = require(columns.tag_name)
    if tag_name.data_type not in TEXT_TYPES:
        raise wrong_type(tag_name, "VARCHAR2")
    quality = require(columns.quality)
    if quality.data_type not in TEXT_TYPES:
        raise wrong_type(quality, "VARCHAR2")
    stamp = require(columns.timestamp)
    if not _plain_timestamp(stamp):
        raise wrong_type(
            stamp,
            f"TIMESTAMP({TIMESTAMP_PRECISION}) (a DATE or a shorter fraction drops microseconds and "
            "turns distinct readings into duplicates; a time-zone type shifts them)",
        )
    value = require(columns.tag_value)
    text = by_name.get(columns.tag_value_text.upper())
    warnings: list[str] = []
    if value.data_type in TEXT_TYPES:
        mode = ValueMode.TEXT_ONLY
    elif value.data_type in NUMBER_TYPES:
        if value.scale is not None or value.precision is not None:
            warnings.append(
                f"column {target}.{value.name} is NUMBER({value.precision},{value.scale}): Oracle "
                "rounds values to its scale and refuses values beyond its precision (those are rejected)"
            )
        if text is None:
            mode = ValueMode.NUMBER_ONLY
            warnings.append(
                f"table {target} has no {columns.tag_value_text.upper()} column: text values and "
                "numbers NUMBER cannot hold are rejected"
            )
        elif text.data_type in TEXT_TYPES:
            mode = ValueMode.SPLIT
        else:
            raise wrong_type(text, "VARCHAR2")
    else:
        raise wrong_type(value, "NUMBER (or VARCHAR2 for a text-only table)")

    layout = layout_for(table, columns, mode)
    written = set(layout.columns)
    for info in by_name.values():
        if info.name not in written and not info.nullable and not info.has_default:
            raise PermanentSinkError(
                f"column {target}.{info.name} is NOT NULL without a default, and the collector does "
                "not write it: every insert would fail",
                code="ORA-01400",
            )
    limits: list[TextLimit | None] = []
    for name, kind in zip(layout.columns, layout.binds, strict=True):
        info = by_name[name]
        limit = info.text_limit(target) if info.data_type in TEXT_TYPES else None
        limits.append(limit)
        if limit is not None:
            warnings.extend(_narrow(info, kind, limit))
    return TableLayout(
        layout.table, layout.mode, layout.columns, layout.binds, tuple(warnings), tuple(limits)
    )


def _narrow(info: ColumnInfo, kind: str, limit: TextLimit) -> list[str]:
    """A warning when a column holds less than the collector accepts: those values are rejected."""
    if kind == "name" and limit.safe_length < MAX_TAG_NAME_LENGTH:
        hint = f"; declare it VARCHAR2({MAX_TAG_NAME_LENGTH} CHAR)" if info.char_used != "C" else ""
        return [
            f"column {limit.column} holds {limit.describe()}: tag names longer than that "
            f"(up to {MAX_TAG_NAME_LENGTH} characters are accepted) are rejected{hint}"
        ]
    if kind == "text" and limit.safe_length < MAX_TEXT_LENGTH // UTF8_MAX_BYTES_PER_CHAR:
        return [
            f"column {limit.column} holds {limit.describe()}: longer text values "
            f"(up to {MAX_TEXT_LENGTH} bytes are accepted) are rejected"
        ]
    return []


def _plain_timestamp(info: ColumnInfo) -> bool:
    kind = info.data_type
    if not kind.startswith("TIMESTAMP") or "ZONE" in kind:
        return False
    precision = info.scale
    if precision is None:
        match = re.match(r"TIMESTAMP\((\d)\)", kind)
        precision = int(match.group(1)) if match else TIMESTAMP_PRECISION
    return precision >= TIMESTAMP_PRECISION
