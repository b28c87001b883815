"""The bare prototype of the collector's flow, to compare CPU per value with the whole service.

    python3 bench/bench_prototype.py [--seconds 120] [--load 1] [--warmup-s 10] [--fill 200]

The same simulated plant as ``bench_endurance.py`` (the service's own simulator, 3 491 tags in 10
groups, polled every second, onto a DataQueue), and one consumer thread that does only what the
flow needs: take a poll off the queue, append its rows to a list, and every 500 rows (or 0.5 s)
write them with ``executemany`` in one transaction into SQLite (the collector's own connection
settings, table and index). No buffer accounting, no write-ahead log, no metrics, no traces, no
logging, no retries, no backups. Prints the process's CPU time per value and its share of one core
after ``--warmup-s``, the figure ``bench_endurance.py --no-tracemalloc`` prints for the whole
service. Both fill the table with ``--fill`` rows per tag first (bench/common.py,
``STEADY_ROWS_PER_TAG``): SQLite's own inserts, most of the figure, cost several times more once each
tag has a page of rows, and a plant's table is in that state for all but its first minutes.
"""

from __future__ import annotations

import argparse
import queue
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_endurance import SPEC_TAGS, cpu_seconds
from bench.common import STEADY_ROWS_PER_TAG, fill_plant, machine
from collector.model import PollingData
from collector.sinks.sqlite import configure_connection, ddl
from collector.sources.simulator import Simulator, split_tags

BATCH = 500
FLUSH_S = 0.5
INSERT = (
    "INSERT INTO TAG_DATA (tag_name, tag_value, tag_value_text, timestamp, quality) VALUES (?, ?, ?, ?, ?)"
)


def consume(data_queue: queue.Queue[object], path: Path, stop: threading.Event, counts: list[int]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    configure_connection(conn)  # the collector's own settings
    conn.executescript(ddl())
    rows: list[tuple[object, ...]] = []
    due = time.monotonic() + FLUSH_S
    while not (stop.is_set() and data_queue.empty()):
        try:
            poll = data_queue.get(timeout=0.05)
        except queue.Empty:
            poll = None
        if isinstance(poll, PollingData):
            stamp = poll.timestamp.replace(tzinfo=None).isoformat(" ", "microseconds")
            for name, value in poll.values.items():
                if isinstance(value, str):
                    rows.append((name, None, value, stamp, "GOOD"))
                else:
                    rows.append((name, value, None, stamp, "GOOD"))
        last = stop.is_set() and data_queue.empty()
        if len(rows) >= BATCH or (rows and (last or time.monotonic() >= due)):
            conn.execute("BEGIN")
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
            counts[0] += len(rows)
            rows = []
            due = time.monotonic() + FLUSH_S
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--load", type=int, default=1, help="multiple of the specification's 3 491 values/s")
    parser.add_argument("--warmup-s", type=float, default=10.0, help="not measured")
    parser.add_argument(
        "--fill", type=int, default=STEADY_ROWS_PER_TAG, help="rows per tag the table holds before the run"
    )
    args = parser.parse_args()
    rate = SPEC_TAGS * args.load
    print(f"machine: {machine()}")
    print(
        f"bare prototype: {rate} values/s into sqlite for {args.seconds:.0f} s,"
        f" the table holding {args.fill} rows per tag first"
    )
    data_queue: queue.Queue[object] = queue.Queue()
    simulator = Simulator(data_queue, groups=10, tags_per_group=split_tags(rate, 10))
    stop = threading.Event()
    counts = [0]
    with tempfile.TemporaryDirectory() as tmp:
        fill_plant("sqlite", Path(tmp) / "tags.db", rate, args.fill)
        consumer = threading.Thread(
            target=consume, args=(data_queue, Path(tmp) / "tags.db", stop, counts), name="consumer"
        )
        consumer.start()
        simulator.start()
        time.sleep(args.warmup_s)  # as bench_endurance.py: the first seconds are not the steady cost
        started, cpu0, generated0 = time.monotonic(), cpu_seconds(), simulator.generated
        time.sleep(args.seconds)
        elapsed, cpu, generated = (
            time.monotonic() - started,
            cpu_seconds() - cpu0,
            simulator.generated - generated0,
        )
        simulator.stop()
        stop.set()
        consumer.join()
    print(
        f"CPU: {cpu / generated * 1e6:.1f} us per value ({cpu / elapsed * 100:.1f} % of one core)"
        f"   values: generated {simulator.generated}, written {counts[0]}"
    )


if __name__ == "__main__":
    main()
