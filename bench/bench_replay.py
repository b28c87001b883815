"""How fast backup files are listed, checked and replayed, against the database's plain bulk path.

    python3 bench/bench_replay.py [--sink sqlite|postgresql] [--values 200000] [--workers 1 2]
                                  [--fill 200]

One backup file is written the way the service writes it (its own spool, batches of 500). Every
table below first holds ``--fill`` rows per tag of the same plant, stamped before the file's (a
plant's table, in the steady state an insert's cost settles to: see ``STEADY_ROWS_PER_TAG`` in
bench/common.py; ``--fill 0`` for a fresh table). Then, in one run: the database's fastest plain
path for the same rows, ready-made (SQLite: ``executemany`` with the service's pragmas;
PostgreSQL: ``COPY`` on one connection, which cannot even skip duplicates); ``collector
backups``'s reading of the file (row count and time range); a dry run and a replay of rows the
table does not hold, with each ``--workers`` count (writer threads, as ``writer.workers`` sets for
``collector replay``); a dry run and a replay again when every row is already present. Each figure
is given as a ratio to the plain path in the same run (how much of the database's speed the replay
keeps) and to the specification's plant of 3 491 values/s (how many times faster than real time a
gap is closed).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PG_DSN,
    STEADY_ROWS_PER_TAG,
    PostgresScratchTable,
    fill_table,
    machine,
    plain_copy,
    plain_sqlite,
    steady_state_rows,
)
from collector.backup import CsvSpool
from collector.config import PostgresSinkConfig, SinkConfig, SqliteSinkConfig
from collector.inventory import ContentsCache
from collector.model import TagValue
from collector.recovery.progress import NoProgress
from collector.recovery.replay import Replayer
from collector.sinks.base import KeyLookup, Sink
from collector.sinks.factory import WRITERS_BY_SINK, build_sink
from collector.sinks.sqlite import SqliteKeyLookup
from collector.spool_format import backup_rows

BATCH = 500
PLANT_RATE = 3491.0


def plant_names() -> list[str]:
    return [f"G{tag // 350 + 1:02d}.T{tag:04d}" for tag in range(3491)]


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


def timed(rows: int, action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return rows / (time.perf_counter() - started)


class Target:
    """The database a replay goes into: a table holding ``fill`` (untimed; the plant's earlier
    rows, see STEADY_ROWS_PER_TAG), emptied back to that on request."""

    def __init__(self, kind: str, root: Path, fill: list[TagValue]) -> None:
        self.kind = kind
        self._db = root / "replay.db"
        self._scratch = PostgresScratchTable("bench_replay") if kind == "postgresql" else None
        self._fill = fill
        self._filled = root / "filled.db"
        if self._scratch is None:
            fill_table(kind, self._filled, fill)  # once; each table to replay into is a copy of it

    def sink(self) -> Sink:
        """The sink as ``collector replay`` builds it."""
        config: SinkConfig = (
            PostgresSinkConfig(dsn=PG_DSN, table=self._scratch.name)
            if self._scratch is not None
            else SqliteSinkConfig(path=self._db)
        )
        return build_sink(config)

    def lookup(self) -> KeyLookup:
        if self._scratch is not None:
            from collector.sinks.postgresql_lookup import PostgresKeyLookup

            return PostgresKeyLookup(PG_DSN, table=self._scratch.name)
        return SqliteKeyLookup(self._db)

    def empty(self) -> None:
        if self._scratch is not None:
            self._scratch.truncate()
            fill_table(self.kind, self._scratch.name, self._fill)
        else:
            self._copy_filled(self._db)

    def _copy_filled(self, path: Path) -> None:
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
        if self._filled.exists():
            shutil.copyfile(self._filled, path)

    def plain(self, root: Path, values: list[TagValue]) -> float:
        if self._scratch is not None:
            self.empty()
            rate = plain_copy(self._scratch.name, values, BATCH)
            self._scratch.truncate()
            return rate
        self._copy_filled(root / "plain.db")
        return plain_sqlite(root / "plain.db", values, BATCH)

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.drop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sink", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--values", type=int, default=200_000)
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        help="writer threads to replay with (default: 1, 2 and the sink's own default)",
    )
    parser.add_argument(
        "--fill",
        type=int,
        default=STEADY_ROWS_PER_TAG,
        help="rows per tag the table holds before each replay and the reference (0: a fresh table)",
    )
    args = parser.parse_args()
    if not args.workers:
        args.workers = sorted({1, 2, WRITERS_BY_SINK[args.sink]})
    values = plant_values(args.values)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spool = CsvSpool(root / "backup")
        for start in range(0, len(values), BATCH):
            path = spool.append(backup_rows(values[start : start + BATCH], datetime.now(UTC)))
        spool.close()
        moved = path.parent / "replayed" / path.name
        fill = steady_state_rows(plant_names(), args.fill, values[0].timestamp - timedelta(seconds=1))
        target = Target(args.sink, root, fill)

        def replayer(workers: int = 1) -> Replayer:
            return Replayer(
                target.sink,
                lookup_factory=target.lookup,
                batch_size=BATCH,
                workers=workers,
                progress=lambda _label, _size: NoProgress(),
            )

        def replay_into_new(workers: int) -> float:
            target.empty()
            source = moved if moved.exists() else path
            return timed(len(values), lambda: replayer(workers).run([source]))

        # What the benchmark itself keeps (the values, the earlier rows of the table) is left out of
        # the cyclic collector's sight: a `collector replay` process does not hold them, and every
        # full collection would walk them all again (it took the replay into PostgreSQL from 0.92 -
        # 0.94 of COPY to 0.77 in alternating runs).
        gc.collect()
        gc.freeze()
        try:
            reference = target.plain(root, values)
            target.empty()
            figures = [
                ("plain executemany" if args.sink == "sqlite" else "plain COPY", reference),
                ("backups: rows and time range", timed(len(values), lambda: ContentsCache().contents(path))),
                ("dry run, rows new", timed(len(values), lambda: replayer().run([path], dry_run=True))),
            ]
            figures.extend(
                (f"replay, rows new, {workers} writer(s)", replay_into_new(workers))
                for workers in args.workers
            )
            workers = max(args.workers)
            figures.extend(
                [
                    (
                        "dry run, every row present",
                        timed(len(values), lambda: replayer().run([moved], dry_run=True)),
                    ),
                    (
                        f"replay, every row present, {workers} writer(s)",
                        timed(len(values), lambda: replayer(workers).run([moved])),
                    ),
                ]
            )
        finally:
            target.close()

    print(f"machine: {machine()}")
    engine = f"SQLite {sqlite3.sqlite_version}" if args.sink == "sqlite" else "PostgreSQL on 127.0.0.1"
    print(f"values: {len(values)} in one backup file, batches of {BATCH}, {engine}")
    print(
        f"the table holds {args.fill} rows per tag of the plant's 3 491 before each replay and the reference"
    )
    for label, rate in figures:
        print(
            f"{label + ':':<40}{rate:>10,.0f} values/s   ratio to plain {rate / reference:5.2f}"
            f"   {rate / PLANT_RATE:5.1f}x the plant"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
