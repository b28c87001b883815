"""The server's tables: columns as the data dictionary shows them, the DDL that creates them,
and the rules every stored value passes (NOT NULL, sizes, NUMBER precision, CHECK constraints)."""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from tests.oracle_double.errors import server_error
from tests.oracle_double.sql import (
    CHECK_IN,
    COLUMN,
    CREATE_INDEX,
    CREATE_TABLE,
    DROP_TABLE,
    PRIMARY_KEY,
    ident,
    split_top,
    statements,
)

MAX_STRING_BYTES = 4000
"""``MAX_STRING_SIZE=STANDARD``, the default (and the compose image's): a VARCHAR2 holds at most
4 000 bytes whatever its length semantics."""

BYTES_PER_CHAR = 4
"""The most bytes one character takes in the database character set, AL32UTF8."""


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

    @property
    def data_length(self) -> int:
        """DATA_LENGTH: the most bytes a value may take (AL32UTF8: four per character, and never
        more than the 4 000 bytes of ``MAX_STRING_SIZE=STANDARD``)."""
        if not self.is_text:
            return 22
        length = self.length or 0
        return min(length * BYTES_PER_CHAR, MAX_STRING_BYTES) if self.char_semantics else length


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


def can(user: str, table: Table, privilege: str) -> bool:
    return table.owner == user or (user, privilege) in table.grants


class Catalog:
    """The database's tables and indexes, guarded by the server's lock."""

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.tables: dict[tuple[str, str], Table] = {}
        self.indexes: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}

    def table(self, name: str, owner: str = "APP") -> Table:
        return self.tables[(owner.upper(), name.upper())]

    def execute_ddl(self, script: str, owner: str) -> None:
        for statement in statements(script):
            run_ddl(self, statement, owner.upper())


class RowFailure(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def server_row(table: Table, given: dict[str, object]) -> dict[str, object]:
    row: dict[str, object] = {}
    for name, column in table.columns.items():
        value = given.get(name, column.default)
        row[name] = _store(table, column, value)
    for constraint, column_name, allowed in table.checks:
        value = row[column_name]
        if value is not None and str(value) not in allowed:
            raise RowFailure(2290, f"check constraint ({table.owner}.{constraint}) violated")
    return row


def _store(table: Table, column: Column, value: object) -> object:
    where = f'"{table.owner}"."{table.name}"."{column.name}"'
    if value == "":
        value = None  # Oracle has no empty string: '' is NULL
    if value is None:
        if not column.nullable:
            raise RowFailure(1400, f"cannot insert NULL into ({where})")
        return None
    if column.is_text:
        text = value if isinstance(value, str) else _to_char(value)
        size = len(text.encode("utf-8", "surrogatepass"))
        # A length in characters still never holds more than DATA_LENGTH bytes.
        for counted, maximum in ((len(text), column.length), (size, column.data_length)):
            if column.char_semantics and maximum is not None and counted > maximum:
                raise RowFailure(
                    12899, f"value too large for column {where} (actual: {counted}, maximum: {maximum})"
                )
        if not column.char_semantics and column.length is not None and size > column.length:
            raise RowFailure(
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
            raise RowFailure(1722, "invalid number") from None
        if column.scale is not None:
            number = number.quantize(Decimal(1).scaleb(-column.scale))
        if column.precision is not None:
            integer_digits = max(number.adjusted() + 1, 0)
            if integer_digits > column.precision - (column.scale or 0):
                raise RowFailure(1438, "value larger than specified precision allowed for this column")
        return number
    if column.data_type == "DATE" or column.data_type.startswith("TIMESTAMP"):
        if not isinstance(value, dt.datetime):
            raise RowFailure(1861, "literal does not match format string")
        if column.data_type == "DATE":
            return value.replace(microsecond=0)
        digits = column.scale if column.scale is not None else 6
        factor = 10 ** (6 - digits)
        return value.replace(microsecond=(value.microsecond // factor) * factor)
    raise RowFailure(932, f"inconsistent datatypes: expected {column.data_type}")


def _to_char(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    return str(value)


def dictionary_value(column: Column, item: str) -> object:
    if item == "column_name":
        return column.name
    if item == "data_type":
        return column.dictionary_type
    if item == "char_length":
        return column.length if column.is_text else 0
    if item == "data_length":
        return column.data_length
    if item == "char_used":
        if not column.is_text:
            return None
        return "C" if column.char_semantics or column.data_type in {"NVARCHAR2", "NCHAR"} else "B"
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


def run_ddl(catalog: Catalog, statement: str, owner: str) -> None:
    flat = " ".join(statement.split())
    if match := CREATE_TABLE.match(statement):
        _create_table(catalog, match, owner)
    elif match := CREATE_INDEX.match(flat):
        table_owner = ident(match.group("owner")) if match.group("owner") else owner
        table = catalog.table(ident(match.group("table")), table_owner)
        columns = tuple(ident(c) for c in split_top(match.group("columns")))
        for column in columns:
            if column not in table.columns:
                raise server_error(904, f'"{column}": invalid identifier')
        with catalog.lock:
            catalog.indexes[(table_owner, ident(match.group("index")))] = (table.name, columns)
    elif match := DROP_TABLE.match(flat):
        key = (ident(match.group("owner")) if match.group("owner") else owner, ident(match.group("table")))
        with catalog.lock:
            if key not in catalog.tables:
                raise server_error(942, "table or view does not exist")
            del catalog.tables[key]
    else:
        raise server_error(900, "invalid SQL statement")


def _create_table(catalog: Catalog, match: re.Match[str], owner: str) -> None:
    table_owner = ident(match.group("owner")) if match.group("owner") else owner
    name = ident(match.group("table"))
    table = Table(table_owner, name, {})
    for item in split_top(match.group("body")):
        flat = " ".join(item.split())
        if pk := PRIMARY_KEY.match(flat):
            table.pk_name = ident(pk.group("name"))
            table.primary_key = tuple(ident(c) for c in split_top(pk.group("columns")))
            continue
        if check := CHECK_IN.match(flat):
            values = frozenset(v.strip().strip("'") for v in split_top(check.group("values")))
            table.checks.append((ident(check.group("name")), ident(check.group("column")), values))
            continue
        column = COLUMN.match(flat)
        if column is None:
            raise server_error(902, f"invalid datatype in: {flat}")
        table.columns[ident(column.group("name"))] = _column_of(column)
    for key_column in table.primary_key:
        if key_column not in table.columns:
            raise server_error(904, f'"{key_column}": invalid identifier')
        table.columns[key_column].nullable = False  # a primary key implies NOT NULL
    with catalog.lock:
        if (table_owner, name) in catalog.tables:
            raise server_error(955, "name is already used by an existing object")
        catalog.tables[(table_owner, name)] = table


def _column_of(match: re.Match[str]) -> Column:
    kind = match.group("type").upper()
    args = [a.strip() for a in (match.group("args") or "").split(",") if a.strip()]
    column = Column(ident(match.group("name")), kind, nullable=not match.group("notnull"))
    if match.group("default"):
        column.default = match.group("default").strip("'")
    if kind in {"VARCHAR2", "NVARCHAR2", "CHAR", "NCHAR"}:
        size, _, semantics = (args[0] if args else "1").partition(" ")
        column.length = int(size)
        column.char_semantics = semantics.upper() == "CHAR"  # NLS_LENGTH_SEMANTICS is BYTE by default
        if not column.char_semantics and column.length > MAX_STRING_BYTES:
            raise server_error(910, "specified length too long for its datatype")
    elif kind in {"NUMBER", "FLOAT"} and args:
        column.precision = int(args[0])
        column.scale = int(args[1]) if len(args) > 1 else (0 if kind == "NUMBER" else None)
    elif kind == "TIMESTAMP":
        column.scale = int(args[0]) if args else 6
        if match.group("zone"):
            column.data_type = "TIMESTAMP " + " ".join(match.group("zone").split()).upper()
    return column
