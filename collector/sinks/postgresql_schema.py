"""The PostgreSQL table: how names are written, the DDL an operator creates (FR-013 to FR-015),
and the one INSERT the sink sends.

Names follow PostgreSQL's own rule for unquoted identifiers: they fold to lower case, so the
default ``TAG_DATA`` is the table ``tag_data`` whichever way a client spells it. The DDL quotes a
name only when it must (a reserved word, a character outside ``[a-z0-9_$]``); the statements the
sink sends always quote, after folding, which names the same objects.
"""

from __future__ import annotations

import re

from psycopg import sql

from collector.model import MAX_TAG_NAME_LENGTH, MAX_TEXT_LENGTH
from collector.sinks.base import ColumnSpec

QUALITY_LENGTH = 20
"""FR-013: ``quality`` is VARCHAR(20)."""

# PostgreSQL's reserved key words (reserved, and reserved-but-can-be-function-or-type): a column
# or table with one of these names must be quoted.
_RESERVED = frozenset(
    """
    all analyse analyze and any array as asc asymmetric authorization binary both case cast check
    collate collation column concurrently constraint create cross current_catalog current_date
    current_role current_schema current_time current_timestamp current_user default deferrable desc
    distinct do else end except false fetch for foreign freeze from full grant group having ilike
    in initially inner intersect into is isnull join lateral leading left like limit localtime
    localtimestamp natural not notnull null offset on only or order outer overlaps placing primary
    references returning right select session_user similar some symmetric system_user table
    tablesample then to trailing true union unique user using variadic verbose when where window
    with
    """.split()  # noqa: SIM905 - a word list reads better as text
)
_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")


def identifier(name: str) -> str:
    """``name`` as PostgreSQL reads an unquoted name (folded to lower case, so the default
    ``TAG_DATA`` is ``tag_data``), quoted only when it must be; ``schema.table`` works too."""
    parts = []
    for part in name.split("."):
        folded = part.lower()
        if _PLAIN.match(folded) and folded not in _RESERVED:
            parts.append(folded)
        else:
            parts.append('"' + folded.replace('"', '""') + '"')
    return ".".join(parts)


def sql_identifier(name: str) -> sql.Identifier:
    """The same object as :func:`identifier` names, always quoted: folded first, so "TAG_DATA"
    and tag_data are one table, as they are for any PostgreSQL client."""
    return sql.Identifier(*(part.lower() for part in name.split(".")))


def ddl(table: str = "TAG_DATA", columns: ColumnSpec | None = None) -> str:
    """The CREATE statements for the table and its timestamp index (FR-013 to FR-015)."""
    c = columns or ColumnSpec()
    name, value, text, stamp, quality = (identifier(n) for n in c.names())
    t = identifier(table)
    # An index lives in its table's schema, so its name is never qualified.
    index = identifier(f"{table.replace('.', '_')}_{c.timestamp}_ix")
    return (
        f"CREATE TABLE IF NOT EXISTS {t} (\n"
        f"    {name} VARCHAR({MAX_TAG_NAME_LENGTH}) NOT NULL CHECK ({name} <> ''),\n"
        f"    {value} NUMERIC,\n"
        f"    {text} VARCHAR({MAX_TEXT_LENGTH}),\n"
        f"    {stamp} TIMESTAMPTZ NOT NULL,\n"
        f"    {quality} VARCHAR({QUALITY_LENGTH}) NOT NULL CHECK ({quality} IN ('GOOD', 'BAD')),\n"
        f"    PRIMARY KEY ({name}, {stamp})\n"
        f");\n"
        f"CREATE INDEX IF NOT EXISTS {index} ON {t} ({stamp});\n"
    )


def insert_statement(table: str, columns: ColumnSpec) -> sql.Composed:
    """One statement for a whole batch: five arrays unnested into the table, duplicates of the
    primary key skipped, so the row count is the number of new rows."""
    names = sql.SQL(", ").join(sql_identifier(n) for n in columns.names())
    key = sql.SQL(", ").join(sql_identifier(n) for n in (columns.tag_name, columns.timestamp))
    # Binary parameters (%b): psycopg dumps a 500-element array several times faster in
    # binary than as text. Numbers still travel as decimal text, cast to numeric by the server.
    return sql.SQL(
        "INSERT INTO {table} ({names}) "
        "SELECT * FROM unnest(%b::text[], %b::numeric[], %b::text[], %b::timestamptz[], %b::text[]) "
        "ON CONFLICT ({key}) DO NOTHING"
    ).format(table=sql_identifier(table), names=names, key=key)
