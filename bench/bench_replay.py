"""How fast backup files are listed, checked and replayed into SQLite, against plain executemany.

    python3 bench/bench_replay.py [--values 200000]

One backup file is written the way the service writes it (its own spool, batches of 500). Then, in
one run: plain executemany of the same rows, ready-made, into a fresh table with the same indexes
and pragmas (the database's own speed); ``collector backups``'s reading of the file (row count and
time range); a dry run and a replay into an empty table; a dry run and a replay again when every
row is already present. Each figure is given as a ratio to plain executemany in the same run (how
much of the database's speed the replay keeps) and to the specification's plant of 3 491 values/s
(how many times faster than real time a gap is closed).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, plain_sqlite
from collector.backup import CsvSpool
from collector.inventory import ContentsCache
from collector.model import TagValue
from collector.recovery.progress import NoProgress
from collector.recovery.replay import Replayer
from collector.sinks.sqlite import SqliteKeyLookup, SqliteSink
from collector.spool_format import backup_rows

BATCH = 500
PLANT_RATE = 3491.0


def plant_values(count: int) -> list[TagValue]:
    """The specification's plant: 3 491 tags a second, numbers, texts and booleans."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    values = []
    for index in range(count):
        tag = index % 3491
        stamp = start + timedelta(seconds=index // 3491, microseconds=tag)
        kind = tag % 10
        value: float | str | bool = round(50 + index % 97 * 0.125, 3)
        if kind == 8:
            value = "RUNNING"
        elif kind == 9:
            value = index % 2 == 0
        values.append(TagValue(f"G{tag // 350 + 1:02d}.T{tag:04d}", value, stamp, "GOOD"))
    return values


def plain(path: Path, values: list[TagValue]) -> float:
    return plain_sqlite(path, values, BATCH)


def timed(rows: int, action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return rows / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--values", type=int, default=200_000)
    args = parser.parse_args()
    values = plant_values(args.values)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spool = CsvSpool(root / "backup")
        for start in range(0, len(values), BATCH):
            path = spool.append(backup_rows(values[start : start + BATCH], datetime.now(UTC)))
        spool.close()
        db = root / "replay.db"

        def replayer() -> Replayer:
            return Replayer(
                lambda: SqliteSink(db),
                lookup_factory=lambda: SqliteKeyLookup(db),
                batch_size=BATCH,
                progress=lambda _label, _size: NoProgress(),
            )

        moved = path.parent / "replayed" / path.name
        reference = plain(root / "plain.db", values)
        figures = [
            ("plain executemany", reference),
            ("backups: rows and time range", timed(len(values), lambda: ContentsCache().contents(path))),
            ("dry run, empty table", timed(len(values), lambda: replayer().run([path], dry_run=True))),
            ("replay, empty table", timed(len(values), lambda: replayer().run([path]))),
            ("dry run, every row present", timed(len(values), lambda: replayer().run([moved], dry_run=True))),
            ("replay, every row present", timed(len(values), lambda: replayer().run([moved]))),
        ]

    print(f"machine: {machine()}")
    print(f"values: {len(values)} in one backup file, batches of {BATCH}, SQLite {sqlite3.sqlite_version}")
    for label, rate in figures:
        print(
            f"{label + ':':<31}{rate:>10,.0f} values/s   ratio to plain {rate / reference:5.2f}"
            f"   {rate / PLANT_RATE:5.1f}x the plant"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
