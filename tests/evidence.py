"""Reading the real evidence: the simulator's ledger, the database, the backup and rejected CSVs.

Zero data loss is shown from these, never from the service's own counters.
"""

from __future__ import annotations

import csv
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from collector.model import parse_timestamp
from collector.sources.simulator import LEDGER_HEADER
from collector.spool_format import BACKUP_HEADER, REJECTED_HEADER

Key = tuple[str, datetime]


def _key(name: str, stamp: str) -> Key:
    return name, parse_timestamp(stamp)


def read_ledger(path: Path) -> dict[Key, dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == LEDGER_HEADER
        rows = {}
        for row in reader:
            key = _key(row["tag_name"], row["timestamp"])
            assert key not in rows, f"ledger holds {key} twice"
            rows[key] = row
        return rows


def csv_files(directories: Iterable[Path], prefix: str) -> list[Path]:
    found: list[Path] = []
    for directory in directories:
        if Path(directory).is_dir():
            found.extend(sorted(Path(directory).glob(f"{prefix}_*.csv")))
    return found


def read_spool_rows(directories: Iterable[Path], prefix: str = "backup") -> list[dict[str, str]]:
    """Every row of every ``prefix_*.csv`` file, checking each file's header."""
    header = BACKUP_HEADER if prefix == "backup" else REJECTED_HEADER
    rows: list[dict[str, str]] = []
    for path in csv_files(directories, prefix):
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            assert tuple(reader.fieldnames or ()) == header, f"{path} has header {reader.fieldnames}"
            rows.extend(reader)
    return rows


def spool_keys(directories: Iterable[Path], prefix: str = "backup") -> Counter[Key]:
    return Counter(_key(r["tag_name"], r["timestamp"]) for r in read_spool_rows(directories, prefix))


def sqlite_keys(path: Path, table: str = "TAG_DATA") -> Counter[Key]:
    """The (tag_name, timestamp) keys stored in a SQLite table, counted (a count above 1 is a bug)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(f"SELECT tag_name, timestamp FROM {table}").fetchall()
    finally:
        conn.close()
    return Counter((name, datetime.fromisoformat(stamp).replace(tzinfo=UTC)) for name, stamp in rows)


@dataclass
class Reconciliation:
    generated: int
    in_database: int
    in_backup_only: int
    in_rejected_only: int
    missing: set[Key]
    unexpected: set[Key]
    database_duplicates: int

    @property
    def lost(self) -> int:
        return len(self.missing)


def reconcile(
    ledger: dict[Key, dict[str, str]],
    database: Counter[Key],
    backups: Counter[Key],
    rejected: Counter[Key] | None = None,
) -> Reconciliation:
    """Where every generated value ended up, from the files and the table alone."""
    rejected = rejected or Counter()
    expected = set(ledger)
    in_db = set(database)
    in_backup = set(backups) - in_db
    in_rejected = set(rejected) - in_db - in_backup
    found = in_db | in_backup | in_rejected
    return Reconciliation(
        generated=len(expected),
        in_database=len(in_db & expected),
        in_backup_only=len(in_backup & expected),
        in_rejected_only=len(in_rejected & expected),
        missing=expected - found,
        unexpected=found - expected,
        database_duplicates=sum(count - 1 for count in database.values() if count > 1),
    )
