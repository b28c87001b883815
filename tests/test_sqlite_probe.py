"""The SQLite probe fails exactly when a write would: while another process holds the write lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from collector.sinks.base import TransientSinkError
from collector.sinks.sqlite import SqliteSink
from tests.telemetry_support import values


def test_the_probe_fails_while_another_connection_holds_the_write_lock(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "tags.db", busy_timeout_s=0.1)
    other = sqlite3.connect(tmp_path / "tags.db", isolation_level=None)
    try:
        sink.ping()
        other.execute("BEGIN IMMEDIATE")  # a maintenance job's long transaction
        with pytest.raises(TransientSinkError):
            sink.write(values(3))
        with pytest.raises(TransientSinkError) as probe:
            sink.ping()
        assert probe.value.code == "SQLITE_BUSY"
        other.execute("ROLLBACK")
        sink.ping()
        assert sink.write(values(3)).written == 3
    finally:
        other.close()
        sink.close()
