"""Throughput of the whole pipeline into SQLite against plain executemany into the same table.

    python3 bench/bench_pipeline.py [--values 300000] [--workers 2]

Both runs write the same values to a fresh file with the same table, indexes and pragmas (WAL,
synchronous=FULL), in batches of 500. The plain run binds ready-made rows; the pipeline run pushes
TagValues through TagBuffer.put_many -> BatchWriter -> SqliteSink, which also converts every value.
The ratio pipeline/plain is the figure: how much of the database's own speed the service keeps.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, polls
from collector.backup import REJECTED_HEADER, CsvSpool
from collector.buffer import TagBuffer
from collector.sinks.sqlite import SqliteSink, ddl, sqlite_row
from collector.writer import BatchWriter

BATCH = 500


def plain(path: Path, data: list[list]) -> float:
    rows = [sqlite_row(v) for poll in data for v in poll]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(ddl())
    insert = (
        "INSERT INTO TAG_DATA (tag_name, tag_value, tag_value_text, timestamp, quality) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tag_name, timestamp) DO NOTHING"
    )
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, rows[i : i + BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    assert conn.execute("SELECT count(*) FROM TAG_DATA").fetchone()[0] == len(rows)
    conn.close()
    return len(rows) / elapsed


def pipeline(directory: Path, data: list[list], workers: int) -> float:
    total = sum(len(p) for p in data)
    buffer = TagBuffer(total + 1, batch_size=BATCH)
    sink = SqliteSink(directory / "pipeline.db")
    sink.ping()  # create the table before the clock starts, as the service does at start
    writer = BatchWriter(
        buffer,
        sink,
        CsvSpool(directory / "backup"),
        CsvSpool(directory / "backup", prefix="rejected", header=REJECTED_HEADER),
        flush_interval_s=0.5,
        workers=workers,
        spill=False,
    )
    writer.start()
    started = time.perf_counter()
    for poll in data:
        buffer.put_many(poll)
    while writer.stats().written < total:
        time.sleep(0.001)
    elapsed = time.perf_counter() - started
    writer.stop()
    sink.close()
    stats = writer.stats()
    assert stats.written == total and stats.backed_up == 0 and stats.buffer_overflow == 0
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--values", type=int, default=300_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    data = polls(args.values // 100)
    print(f"machine: {machine()}")
    print(
        f"values: {args.values}, batch size {BATCH}, SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = plain(Path(tmp) / "plain.db", data)
        print(f"plain executemany:        {base:>10,.0f} values/s")
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as run_dir:
                rate = pipeline(Path(run_dir), data, workers)
            print(f"pipeline, {workers} worker(s):    {rate:>10,.0f} values/s   ratio {rate / base:.2f}")


if __name__ == "__main__":
    main()
