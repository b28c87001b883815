"""How fast a backup file is read, checked and replayed into SQLite, against the plant's rate.

    PYTHONPATH=. python3 bench/replay.py [--rows 349100] [--batch-size 500]

It writes one backup file the way the service does (the service's own spool), then times, in one
run: ``collector backups``'s reading of it (row count and time range), a dry run into an empty
database, a replay into an empty database, a dry run over the replayed rows (every key present),
and a second replay of the same rows (every row a duplicate). Each figure is reported as rows per
second and as a ratio to the specification's plant, 3 491 values/s: a ratio of 20 means an outage
of one hour is replayed in three minutes. Figures from one run on one machine; compare ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.backup import CsvSpool, backup_rows
from collector.inventory import ContentsCache
from collector.model import TagValue
from collector.recovery.progress import NoProgress
from collector.recovery.replay import Replayer
from collector.sinks.sqlite import SqliteKeyLookup, SqliteSink

PLANT_RATE = 3491.0


def _values(count: int) -> list[TagValue]:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    values = []
    for index in range(count):
        tag = index % 3491
        stamp = start + timedelta(seconds=index // 3491, microseconds=tag)
        kind = tag % 10
        value: object = round(50 + index % 97 * 0.125, 3) if kind < 8 else ("RUNNING" if kind == 8 else True)
        values.append(TagValue(f"G{tag // 350 + 1:02d}.T{tag:04d}", value, stamp, "GOOD"))  # type: ignore[arg-type]
    return values


def _timed(label: str, rows: int, action: Callable[[], object]) -> None:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    rate = rows / elapsed
    print(f"{label:<38} {elapsed:7.2f} s  {rate:>10,.0f} rows/s  {rate / PLANT_RATE:6.1f}x the plant's rate")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=349_100, help="rows in the backup file (default: 100 s of plant)"
    )
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spool = CsvSpool(root / "backup")
        values = _values(args.rows)
        for start in range(0, len(values), 500):
            path = spool.append(backup_rows(values[start : start + 500], datetime.now(UTC)))
        spool.close()
        size = path.stat().st_size
        print(f"backup file: {args.rows:,} rows, {size / 1024 / 1024:.1f} MiB; batches of {args.batch_size}")
        db = root / "tags.db"

        def replayer() -> Replayer:
            return Replayer(
                lambda: SqliteSink(db),
                lookup_factory=lambda: SqliteKeyLookup(db),
                batch_size=args.batch_size,
                progress=lambda _label, _size: NoProgress(),
            )

        _timed("collector backups (count, time range)", args.rows, lambda: ContentsCache().contents(path))
        _timed("dry run, empty database", args.rows, lambda: replayer().run([path], dry_run=True))
        moved = path.parent / "replayed" / path.name
        _timed("replay, empty database", args.rows, lambda: replayer().run([path]))
        _timed("dry run, every row present", args.rows, lambda: replayer().run([moved], dry_run=True))
        _timed("replay again, every row present", args.rows, lambda: replayer().run([moved]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
