"""Shared by the recovery tests: real backup files, the rows of a real SQLite table, a simulator
ledger, and a sink that fails the way a database in an outage does."""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.backup import CsvSpool
from collector.model import TagValue, parse_timestamp
from collector.sinks.base import Sink, TransientSinkError, WriteResult
from collector.spool_format import backup_rows, format_value
from tests.evidence import read_ledger

REPO_ROOT = Path(__file__).resolve().parent.parent

Key = tuple[str, datetime]


def sample_values(count: int, *, start: datetime | None = None, tags: int = 10) -> list[TagValue]:
    """``count`` values of every kind the collector stores: floats, ints, text, booleans, BAD."""
    base = start or datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    values = []
    for index in range(count):
        stamp = base + timedelta(milliseconds=100 * (index // tags), microseconds=7)
        name = f"L1.T{index % tags:03d}"
        kind = index % 5
        value: object
        if kind == 0:
            value = round(index * 0.37, 3)
        elif kind == 1:
            value = index
        elif kind == 2:
            value = ("RUNNING", "STOPPED", "ALARM")[index % 3]
        elif kind == 3:
            value = index % 2 == 0
        else:
            value = None
        values.append(TagValue(name, value, stamp, "BAD" if value is None else "GOOD"))
    return values


def write_backup(directory: Path, values: Sequence[TagValue], *, batch: int = 500) -> Path:
    """A backup file written by the service's own spool, closed as the service closes it."""
    spool = CsvSpool(directory)
    path: Path | None = None
    for start in range(0, len(values), batch):
        path = spool.append(backup_rows(values[start : start + batch], datetime.now(UTC)))
    spool.close()
    assert path is not None
    return path


def table_rows(db: Path, table: str = "TAG_DATA") -> dict[Key, tuple[object, object, str]]:
    """Every row of the table: (tag_name, timestamp) -> (tag_value, tag_value_text, quality)."""
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            f"SELECT tag_name, timestamp, tag_value, tag_value_text, quality FROM {table}"
        ).fetchall()
    result = {}
    for name, stamp, number, text, quality in rows:
        key = (name, parse_timestamp(stamp))
        assert key not in result, f"{key} stored twice"
        result[key] = (number, text, quality)
    return result


def ledger_rows(paths: Iterable[Path]) -> dict[Key, tuple[str, str]]:
    """What the simulator generated: (tag_name, timestamp) -> (value as the CSV spells it, quality)."""
    result: dict[Key, tuple[str, str]] = {}
    for path in paths:
        for key, row in read_ledger(path).items():
            assert key not in result, f"{key} generated twice"
            result[key] = (row["tag_value"], row["quality"])
    return result


def expected_rows(values: Iterable[TagValue]) -> dict[Key, tuple[str, str]]:
    """Values as a ledger would list them."""
    return {(v.tag_name, v.timestamp): (format_value(v.value), v.quality) for v in values}


def same_value(spelled: str, number: object, text: object) -> bool:
    """Does a stored row hold the value the ledger spells? Numbers compare as numbers (SQLite keeps
    12.0 as 12), text as text, and an empty spelling means no value at all."""
    if spelled == "":
        return number is None and text is None
    if number is not None:
        return text is None and float(spelled) == float(number)  # type: ignore[arg-type]
    if isinstance(text, str) and text in ("nan", "inf", "-inf"):
        return math.isnan(float(spelled)) if text == "nan" else float(spelled) == float(text)
    return text == spelled


def assert_table_matches(db: Path, expected: dict[Key, tuple[str, str]]) -> None:
    """The table holds exactly the expected rows (same keys, values and qualities), no more."""
    stored = table_rows(db)
    missing = expected.keys() - stored.keys()
    extra = stored.keys() - expected.keys()
    assert not missing and not extra, (
        f"{len(missing)} rows missing (e.g. {sorted(missing)[:3]}), {len(extra)} extra"
    )
    wrong = [
        (key, expected[key], stored[key])
        for key in expected
        if not (same_value(expected[key][0], *stored[key][:2]) and expected[key][1] == stored[key][2])
    ]
    assert not wrong, f"{len(wrong)} rows differ, e.g. {wrong[:3]}"


class OutageSink:
    """Wraps a real sink and plays a database outage: ``lose_acks(n)`` commits the next ``n``
    batches and then raises as if the acknowledgement was lost; ``down()`` fails every call
    before it reaches the database; ``up()`` ends the outage."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.system_name = inner.system_name
        self.table = inner.table
        self._lock = threading.Lock()
        self._down = False
        self._lost_acks = 0
        self.committed_unacknowledged: list[TagValue] = []

    def down(self, *, lose_acks: int = 0) -> None:
        with self._lock:
            self._down = True
            self._lost_acks = lose_acks

    def up(self) -> None:
        with self._lock:
            self._down = False
            self._lost_acks = 0

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        with self._lock:
            down, lose = self._down, self._lost_acks > 0
            if lose:
                self._lost_acks -= 1
        if lose:
            self.inner.write(batch)
            with self._lock:
                self.committed_unacknowledged.extend(batch)
            raise TransientSinkError("connection reset after commit", code="ECONNRESET")
        if down:
            raise TransientSinkError("database unavailable", code="ECONNREFUSED")
        return self.inner.write(batch)

    def ping(self) -> None:
        with self._lock:
            down = self._down
        if down:
            raise TransientSinkError("database unavailable", code="ECONNREFUSED")
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()
