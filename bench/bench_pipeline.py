"""Throughput of the whole pipeline against plain bulk inserts into the same table, same run.

    python3 bench/bench_pipeline.py [--sink sqlite|postgresql] [--values 300000] [--workers 1 2 4]
                                    [--wal interval|always|off]

Every run writes the same values, in batches of 500, one transaction per batch, into a fresh table
with the same indexes. The plain run sends ready-made rows with the database's fastest plain path
(SQLite: ``executemany`` with WAL and synchronous=FULL; PostgreSQL: ``COPY``, which cannot even skip
duplicates). The pipeline run pushes TagValues through TagBuffer.put_many -> BatchWriter -> the sink,
which also converts every value, with the write-ahead log in front of the buffer as the service
runs by default (``--wal off`` for the buffer alone): every poll appended to the log before the
writers can take it, released once written. The ratio pipeline/plain is the figure: how much of the
database's own speed the service keeps.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PG_DSN, PostgresScratchTable, machine, plain_copy, plain_sqlite, polls, timed_drain
from collector.backup import CsvSpool
from collector.buffer import TagBuffer
from collector.logged_buffer import LoggedBuffer
from collector.model import TagValue
from collector.sinks.base import Sink
from collector.sinks.sqlite import SqliteSink
from collector.spool_format import SpoolKind
from collector.wal import WriteAheadLog
from collector.writer import BatchWriter

BATCH = 500


def plain(path: Path, data: list[list[TagValue]]) -> float:
    return plain_sqlite(path, [v for poll in data for v in poll], BATCH)


def plain_postgres(table: str, data: list[list[TagValue]]) -> float:
    return plain_copy(table, [v for poll in data for v in poll], BATCH)


def make_sink(kind: str, directory: Path, table: str) -> Sink:
    if kind == "postgresql":
        from collector.sinks.postgresql import PostgresSink

        return PostgresSink(PG_DSN, table=table, pool_size=5)
    return SqliteSink(directory / "pipeline.db")


@dataclass(frozen=True, slots=True)
class Target:
    """Where the pipeline writes: the database kind, its table (PostgreSQL) and the log's durability."""

    kind: str = "sqlite"
    table: str = ""
    wal: str = "interval"


def pipeline(directory: Path, data: list[list[TagValue]], workers: int, target: Target) -> float:
    kind, table, wal = target.kind, target.table, target.wal
    total = sum(len(p) for p in data)
    log = None if wal == "off" else WriteAheadLog(directory / "wal", durability=wal)
    buffer = (
        TagBuffer(total + 1, batch_size=BATCH)
        if log is None
        else LoggedBuffer(log, total + 1, batch_size=BATCH)
    )
    if log is not None:
        log.open()
        log.start()
    sink = make_sink(kind, directory, table)
    sink.ping()  # open the database before the clock starts, as the service does at start
    writer = BatchWriter(
        buffer,
        sink,
        CsvSpool(directory / "backup"),
        CsvSpool(directory / "backup", kind=SpoolKind.REJECTED),
        flush_interval_s=0.5,
        workers=workers,
        spill=False,
        on_settled=buffer.settled if isinstance(buffer, LoggedBuffer) else None,
    )
    writer.start()
    elapsed = timed_drain(buffer, writer, data, total)
    writer.stop()
    sink.close()
    if log is not None:
        log.close()
    stats = writer.stats()
    assert stats.written == total and stats.backed_up == 0 and stats.buffer_overflow == 0
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sink", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--values", type=int, default=300_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG bar chart of the figures")
    parser.add_argument(
        "--wal",
        choices=["interval", "always", "off"],
        default="interval",
        help="the pipeline's wal.durability",
    )
    args = parser.parse_args()
    data = polls(args.values // 100)
    print(f"machine: {machine()}")
    print(f"write-ahead log: {args.wal}")
    if args.sink == "sqlite":
        print(f"values: {args.values}, batch {BATCH}, SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL")
        with tempfile.TemporaryDirectory() as tmp:
            base = plain(Path(tmp) / "plain.db", data)
        print(f"plain executemany:        {base:>10,.0f} values/s")
        rates = {"plain executemany": base}
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as run_dir:
                rate = pipeline(Path(run_dir), data, workers, Target(wal=args.wal))
            rates[f"pipeline, {workers} worker(s)"] = rate
            print(f"pipeline, {workers} worker(s):    {rate:>10,.0f} values/s   ratio {rate / base:.2f}")
        if args.plot:
            plot(rates, args.plot, "into SQLite")
        return
    table = PostgresScratchTable("bench_pipeline")
    try:
        print(f"values: {args.values}, batch {BATCH}, PostgreSQL on 127.0.0.1")
        base = plain_postgres(table.name, data)
        print(f"plain COPY:               {base:>10,.0f} values/s")
        rates = {"plain COPY": base}
        for workers in args.workers:
            table.truncate()
            with tempfile.TemporaryDirectory() as run_dir:
                rate = pipeline(Path(run_dir), data, workers, Target("postgresql", table.name, args.wal))
            rates[f"pipeline, {workers} worker(s)"] = rate
            print(f"pipeline, {workers} worker(s):    {rate:>10,.0f} values/s   ratio {rate / base:.2f}")
        if args.plot:
            plot(rates, args.plot, "into PostgreSQL")
    finally:
        table.drop()


def plot(rates: dict[str, float], path: Path, title: str) -> None:
    """Bars of values/s, with the specification's 3 491 values/s as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(rates)
    ax.barh(names, [rates[n] for n in names], color=["gray"] + ["tab:blue"] * (len(names) - 1))
    ax.axvline(3491, color="tab:red", linestyle="--", label="specification: 3 491 values/s")
    ax.invert_yaxis()
    ax.set_xlabel("values per second")
    ax.set_title(f"Throughput {title}")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
