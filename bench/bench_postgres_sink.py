"""PostgreSQL sink against plain bulk inserts into the same table, in the same run.

    python3 bench/bench_postgres_sink.py [--values 100000] [--batch 500] [--repeat 3]

Every method writes the same values, in batches of ``--batch``, into the same freshly truncated
scratch table (created with ``collector schema --dialect postgresql``'s DDL and dropped at the end),
one transaction per batch:

- ``sink``: ``PostgresSink.write`` (unnest arrays, ON CONFLICT DO NOTHING, row count), one thread;
- ``sink, 2 threads``: two threads sharing the sink, as the writer's two default workers do;
- ``executemany``: psycopg's ``executemany`` of a plain INSERT (no conflict handling);
- ``COPY``: ``COPY ... FROM STDIN`` straight into the table (no conflict handling);
- ``sink, all duplicates``: the sink writing batches that are already stored (a replay, or a
  retry after a lost acknowledgement);
- ``sink, 1 bad row per batch``: the sink isolating one refused row in every batch.

Each figure is the best of ``--repeat`` runs; ratios are against ``sink`` from the same run.
Speed is reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from collector.model import TagValue
from collector.sinks.postgresql import PostgresSink, ddl, pg_row

DEFAULT_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"
STATUS = ("RUNNING", "STOPPED", "IDLE", "ALARM")


def make_values(count: int) -> list[TagValue]:
    """A plant-like mix: mostly floats, some integers, text and booleans; unique keys."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    values: list[TagValue] = []
    for index in range(count):
        kind = index % 10
        value: object
        if kind <= 5:
            value = round(50 + 40 * ((index * 7919) % 1000) / 1000, 3)
        elif kind == 6:
            value = index % 100_000
        elif kind == 7:
            value = STATUS[index % len(STATUS)]
        elif kind == 8:
            value = index % 3 == 0
        else:
            value = round(-20 + (index % 777) * 0.125, 4)
        stamp = start + timedelta(seconds=index // 3491, microseconds=index % 1_000_000)
        values.append(TagValue(f"G{index % 10 + 1:02d}.T{index % 3491:04d}", value, stamp))
    return values


def batches(values: Sequence[TagValue], size: int) -> list[list[TagValue]]:
    return [list(values[i : i + size]) for i in range(0, len(values), size)]


class Bench:
    def __init__(self, dsn: str, table: str, values: list[TagValue], batch: int) -> None:
        self.dsn = dsn
        self.table = table
        self.values = values
        self.batches = batches(values, batch)
        self.columns = "tag_name, tag_value, tag_value_text, timestamp, quality"
        self.admin = psycopg.connect(dsn, autocommit=True)

    def truncate(self) -> None:
        self.admin.execute(f"TRUNCATE {self.table}")

    def stored(self) -> int:
        row = self.admin.execute(f"SELECT count(*) FROM {self.table}").fetchone()
        return int(row[0]) if row else 0

    def sink(self) -> PostgresSink:
        return PostgresSink(self.dsn, table=self.table, pool_size=5)

    # -- methods: each returns the seconds its writes took (set-up excluded)

    def run_sink(self, threads: int = 1) -> float:
        sink = self.sink()
        sink.ping()
        try:
            return self._timed_threads(threads, sink.write)
        finally:
            sink.close()

    def run_sink_duplicates(self) -> float:
        sink = self.sink()
        try:
            for batch in self.batches:
                sink.write(batch)
            return self._timed_threads(1, sink.write)
        finally:
            sink.close()

    def run_sink_bad_row(self) -> float:
        bad = [[*batch[:-1], batch[-1]._replace(quality="UNKNOWN")] for batch in self.batches]
        sink = self.sink()
        sink.ping()
        try:
            started = time.perf_counter()
            for batch in bad:
                sink.write(batch)
            return time.perf_counter() - started
        finally:
            sink.close()

    def run_executemany(self) -> float:
        insert = f"INSERT INTO {self.table} ({self.columns}) VALUES (%s, %s, %s, %s, %s)"
        with psycopg.connect(self.dsn) as conn:
            started = time.perf_counter()
            for batch in self.batches:
                with conn.cursor() as cursor:
                    cursor.executemany(insert, [pg_row(v) for v in batch])
                conn.commit()
            return time.perf_counter() - started

    def run_copy(self) -> float:
        statement = f"COPY {self.table} ({self.columns}) FROM STDIN"
        with psycopg.connect(self.dsn) as conn:
            started = time.perf_counter()
            for batch in self.batches:
                with conn.cursor() as cursor, cursor.copy(statement) as copy:
                    for value in batch:
                        copy.write_row(pg_row(value))
                conn.commit()
            return time.perf_counter() - started

    def _timed_threads(self, threads: int, write: Callable[[list[TagValue]], object]) -> float:
        shares = [self.batches[i::threads] for i in range(threads)]

        def work(share: list[list[TagValue]]) -> None:
            for batch in share:
                write(batch)

        workers = [
            threading.Thread(target=work, args=(share,), name=f"bench-{i}") for i, share in enumerate(shares)
        ]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", default=os.environ.get("BENCH_PG_DSN", DEFAULT_DSN))
    parser.add_argument("--values", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    table = f"bench_tag_data_{uuid.uuid4().hex[:8]}"
    values = make_values(args.values)
    bench = Bench(args.dsn, table, values, args.batch)
    bench.admin.execute(ddl(table))
    methods: list[tuple[str, Callable[[], float], int]] = [
        ("sink", bench.run_sink, args.values),
        ("sink, 2 threads", lambda: bench.run_sink(2), args.values),
        ("executemany (plain INSERT)", bench.run_executemany, args.values),
        ("COPY (plain)", bench.run_copy, args.values),
        ("sink, all duplicates", bench.run_sink_duplicates, 0),
        ("sink, 1 bad row per batch", bench.run_sink_bad_row, args.values - len(bench.batches)),
    ]
    results: dict[str, list[float]] = {name: [] for name, _, _ in methods}
    try:
        for _ in range(args.repeat):
            for name, method, expected_new in methods:
                bench.truncate()
                seconds = method()
                stored = bench.stored()
                if stored != (expected_new or args.values):
                    raise SystemExit(f"{name}: {stored} rows stored, expected {expected_new or args.values}")
                results[name].append(seconds)
    finally:
        bench.admin.execute(f"DROP TABLE IF EXISTS {table}")
        bench.admin.close()

    server = psycopg.connect(args.dsn).info.server_version
    print(f"machine: {machine()}")
    print(
        f"# {args.values} values in batches of {args.batch}, best of {args.repeat};"
        f" psycopg {psycopg.__version__}, PostgreSQL {server // 10000} (loopback)"
    )
    base = min(results["sink"])
    print("| method | values/s | time per 500-row batch | vs sink |")
    print("|---|---:|---:|---:|")
    for name, _, _ in methods:
        best = min(results[name])
        rate = args.values / best
        per_batch_ms = 1000 * best / len(bench.batches)
        spread = f" (median {args.values / statistics.median(results[name]):,.0f})" if args.repeat > 2 else ""
        print(f"| {name} | {rate:,.0f}{spread} | {per_batch_ms:.2f} ms | {base / best:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
