"""How the database's own rate changes as its table fills: the reason benchmarks fill tables first.

    python3 bench/bench_table_state.py [--sink sqlite|postgresql] [--tags 3491] [--rows-per-tag 300]

A plant of ``--tags`` tags is written poll after poll (every tag once per poll, one timestamp per
poll, batches of 500) straight through the sink into a fresh table, until each tag has
``--rows-per-tag`` rows. Every time another 20 rows per tag have gone in, it prints the rate of
that stretch against the rows each tag held.

Why it moves: the primary key is (tag, timestamp), so a batch's rows go to as many places in the
key's index as the batch has tags. While a tag has few rows, many tags share an index page and a
commit rewrites few pages; once each tag has about a page of rows, every row of a batch changes a
page of its own, and each changed page is written whole to the database's log at commit. The rate
falls until then and stays there: the state a plant's table is in after its first minutes, and
for the rest of its life. ``STEADY_ROWS_PER_TAG`` in bench/common.py is how full the other
benchmarks make a table before they time it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PostgresScratchTable, machine, plant_names, sink_section
from collector.config import Config
from collector.model import TagValue
from collector.sinks import build_sink

BATCH = 500
STRETCH_ROWS_PER_TAG = 20


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sink", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--tags", type=int, default=3491)
    parser.add_argument("--rows-per-tag", type=int, default=300)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"sink: {args.sink}, {args.tags} tags, batches of {BATCH}, one poll of every tag per timestamp")
    names = plant_names(args.tags)
    scratch = PostgresScratchTable("bench_table_state") if args.sink == "postgresql" else None
    start = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            section = sink_section(args.sink, Path(tmp), scratch.name if scratch else "TAG_DATA")
            sink = build_sink(Config.model_validate({"sink": section}).sink)
            sink.ping()
            started = time.perf_counter()
            for poll in range(args.rows_per_tag):
                stamp = start + timedelta(seconds=poll)
                values = [TagValue(name, float(poll), stamp) for name in names]
                for first in range(0, len(values), BATCH):
                    sink.write(values[first : first + BATCH])
                if (poll + 1) % STRETCH_ROWS_PER_TAG == 0:
                    elapsed = time.perf_counter() - started
                    rate = STRETCH_ROWS_PER_TAG * args.tags / elapsed
                    print(
                        f"rows per tag {poll + 1 - STRETCH_ROWS_PER_TAG:4d} to {poll + 1:4d}:"
                        f" {rate:>9,.0f} values/s"
                    )
                    started = time.perf_counter()
            sink.close()
    finally:
        if scratch is not None:
            scratch.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
