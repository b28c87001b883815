"""Databases the writer can put batches into, each one module behind :class:`~collector.sinks.base.Sink`.

Every database has the same shape: ``<db>.py`` the sink, ``<db>_schema.py`` (or the sink module
itself for SQLite) the DDL an operator creates and the statements, ``<db>_errors.py`` what the
driver's errors mean, ``<db>_lookup.py`` the read-only key lookup for ``collector replay --dry-run``.
Sink modules take plain values; :mod:`collector.sinks.factory` is the one place that reads the
configuration and builds them.
"""

from __future__ import annotations

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
from collector.sinks.factory import DIALECTS, build_key_lookup, build_sink, schema_ddl

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
    "schema_ddl",
]
