"""How independent are this machine's CPUs? The context every overlap figure needs.

    python3 bench/bench_cpu_sharing.py [--rows 200000]

Several benchmarks (overload, replay) ask the database's work to run at full speed on one CPU while
Python work (the producer, the file's reading) runs on another. That works only as far as the CPUs
are independent. A virtual machine's CPUs may be hyperthreads of one physical core, or share its
caches and memory bandwidth with other guests, and then work on one slows the other.

This script times the same work, SQLite inserting rows into a database in memory (C, the interpreter
lock released), three ways: alone; beside a second process spinning a pure Python loop (a producer
at full speed); beside a second process doing the same inserts. It prints the CPU time the work
took each way and the ratio to alone. On independent CPUs both ratios are about 1.0; "effective
CPUs" is what two busy processes get done together, in units of one of them alone.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from collector.sinks.sqlite import ddl

BATCH = 500


def insert_rows(rows: int) -> float:
    """CPU seconds this thread spent inserting ``rows`` rows in batches of 500, one multi-row
    INSERT per batch, into the project's table in a database in memory."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(ddl())
    statement = "INSERT INTO TAG_DATA VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * BATCH)
    batches = []
    for start in range(0, rows, BATCH):
        params: list[object] = []
        for index in range(start, start + BATCH):
            params += [
                f"G{index % 10}.T{index % 3491:04d}",
                index * 0.5,
                None,
                f"2026-01-01 {index:020d}",
                "GOOD",
            ]
        batches.append(params)
    started = time.thread_time()
    for params in batches:
        conn.execute(statement, params)
    used = time.thread_time() - started
    conn.close()
    return used


def spin(stop: multiprocessing.synchronize.Event) -> None:
    """A pure Python loop, as a producer running flat out."""
    count = 0
    while not stop.is_set():
        for _ in range(10_000):
            count += 1


def beside(rows: int, other: str) -> float:
    """CPU seconds of :func:`insert_rows` while another process spins or inserts too."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    process = (
        context.Process(target=spin, args=(stop,))
        if other == "spin"
        else context.Process(target=insert_rows, args=(rows,))
    )
    process.start()
    time.sleep(0.5)  # the other process is running before the clock starts
    try:
        return insert_rows(rows)
    finally:
        stop.set()
        process.join()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    alone = min(insert_rows(args.rows) for _ in range(3))
    spinning = beside(args.rows, "spin")
    paired = beside(args.rows, "insert")
    print(f"SQLite inserts, {args.rows:,} rows, CPU time:")
    print(f"  alone                                 {alone:6.3f} s   1.00")
    print(f"  beside a process spinning in Python   {spinning:6.3f} s   {spinning / alone:4.2f}")
    print(f"  beside a process doing the same       {paired:6.3f} s   {paired / alone:4.2f}")
    print(f"effective CPUs with both busy: {2 * alone / paired:.2f} (of {multiprocessing.cpu_count()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
