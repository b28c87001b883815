"""Databases the writer can put batches into, each one module behind :class:`~collector.sinks.base.Sink`.

Each sink module provides ``ddl(table, columns) -> str`` (the schema an operator creates) and
``from_config(config) -> Sink``; it may also provide ``key_lookup(config) -> KeyLookup``, a
read-only check of which keys are stored (used by ``collector replay --dry-run``).
:func:`build_sink`, :func:`build_key_lookup` and :func:`schema_ddl` find the module by the configured
type and import it only then, so the SQLite default needs no database driver at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from collector.sinks.base import (
    ColumnSpec,
    ErrorKind,
    KeyLookup,
    PermanentSinkError,
    RowError,
    Sink,
    SinkError,
    TagKey,
    TransientSinkError,
    WriteResult,
)

if TYPE_CHECKING:
    from collector.config import ColumnNames, SinkConfig

__all__ = [
    "DIALECTS",
    "ColumnSpec",
    "ErrorKind",
    "KeyLookup",
    "PermanentSinkError",
    "RowError",
    "Sink",
    "SinkError",
    "TagKey",
    "TransientSinkError",
    "WriteResult",
    "build_key_lookup",
    "build_sink",
    "column_spec",
    "schema_ddl",
]

DIALECTS: dict[str, str] = {
    "sqlite": "collector.sinks.sqlite",
    "oracle": "collector.sinks.oracle",
    "postgresql": "collector.sinks.postgresql",
}
"""Sink type (also the ``collector schema --dialect`` name) -> the module that implements it."""


def column_spec(columns: ColumnNames) -> ColumnSpec:
    return ColumnSpec(**columns.model_dump())


def _module(dialect: str) -> Any:
    try:
        name = DIALECTS[dialect]
    except KeyError:
        raise ValueError(f"unknown dialect {dialect!r}; choose from {', '.join(sorted(DIALECTS))}") from None
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"the {dialect} sink is not available: {exc}") from exc


def schema_ddl(dialect: str, table: str = "TAG_DATA", columns: ColumnSpec | None = None) -> str:
    """The DDL for the target table and its timestamp index in ``dialect``."""
    ddl: str = _module(dialect).ddl(table, columns or ColumnSpec())
    return ddl


def build_sink(config: SinkConfig) -> Sink:
    """Create the sink the configuration names (without requiring the database to be up)."""
    sink: Sink = _module(config.type).from_config(config)
    return sink


def build_key_lookup(config: SinkConfig) -> KeyLookup | None:
    """A read-only key lookup for the configured database, or None when its sink module offers none."""
    factory = getattr(_module(config.type), "key_lookup", None)
    if factory is None:
        return None
    lookup: KeyLookup = factory(config)
    return lookup
