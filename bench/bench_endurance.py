"""Memory and CPU over time at a steady load: does the service stay flat?

    python3 bench/bench_endurance.py [--seconds 150] [--load 1] [--sink sqlite|postgresql|null]
                                     [--sample-s 10] [--warmup-s 30] [--plot memory.png]
                                     [--wal interval|always|off] [--no-tracemalloc]

Runs the service in this process with the simulator at ``--load`` x 3 491 values per second and
samples, every ``--sample-s`` seconds, the resident set size and the bytes allocated by Python
(tracemalloc), then fits a line to the samples after ``--warmup-s``: the slope is the figure
(growth per hour; flat means no leak). Also prints the CPU time per value after the warm-up
(``bench_prototype.py`` prints the same figure for the bare flow). For a day-long soak:
``--seconds 86400 --sample-s 60``. ``--sink null`` discards rows, to see the collector's own
memory at loads no local database takes.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    STEADY_ROWS_PER_TAG,
    PostgresScratchTable,
    fill_plant,
    machine,
    sink_section,
)
from collector.config import Config
from collector.model import TagValue
from collector.service import CollectorService
from collector.sinks.base import WriteResult

SPEC_TAGS = 3491


class NullSink:
    """Accepts every row and keeps none: the database is infinitely fast."""

    system_name = "null"
    table = "TAG_DATA"

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        return WriteResult(written=len(batch))

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, bytes), in bytes per hour."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600 if var else float("nan")


def config_for(args: argparse.Namespace, directory: Path, table: str) -> Config:
    return Config.model_validate(
        {
            "source": {"type": "simulator", "tags": SPEC_TAGS * args.load, "groups": 10},
            "sink": sink_section(args.sink, directory, table),
            "backup": {"dir": str(directory / "backup")},
            "wal": {"durability": args.wal, "dir": str(directory / "wal")},
            "api": {"enabled": False},
            "logging": {"level": "WARNING"},
        }
    )


def run(args: argparse.Namespace) -> list[dict[str, float]]:
    samples: list[dict[str, float]] = []
    scratch = PostgresScratchTable("bench_endurance") if args.sink == "postgresql" else None
    with tempfile.TemporaryDirectory() as tmp:
        config = config_for(args, Path(tmp), scratch.name if scratch else "TAG_DATA")
        if args.sink != "null":
            # In a process of its own, so that this one's memory, the figure, never held the rows.
            filler = multiprocessing.get_context("spawn").Process(
                target=fill_plant,
                args=(
                    args.sink,
                    scratch.name if scratch else Path(tmp) / "tags.db",
                    SPEC_TAGS * args.load,
                    args.fill,
                ),
            )
            filler.start()
            filler.join()
        service = CollectorService(config, sink=NullSink() if args.sink == "null" else None)
        if args.tracemalloc:
            tracemalloc.start()
        service.start()
        started = time.monotonic()
        cpu0 = cpu_seconds()
        try:
            while (elapsed := time.monotonic() - started) < args.seconds:
                time.sleep(min(args.sample_s, args.seconds - elapsed))
                snap = service.snapshot()
                traced, _peak = tracemalloc.get_traced_memory() if args.tracemalloc else (0, 0)
                samples.append(
                    {
                        "t": time.monotonic() - started,
                        "rss": rss_bytes(),
                        "traced": traced,
                        "accepted": snap.accepted,
                        "written": snap.writer.written,
                        "backed_up": snap.writer.backed_up,
                        "buffer": snap.writer.buffer_size,
                        "cpu": cpu_seconds() - cpu0,
                    }
                )
                last = samples[-1]
                print(
                    f"  t={last['t']:6.0f}s rss={last['rss'] / 2**20:7.1f} MiB "
                    f"traced={last['traced'] / 2**20:6.1f} MiB accepted={last['accepted']:>10.0f} "
                    f"buffer={last['buffer']:>6.0f}",
                    flush=True,
                )
        finally:
            service.stop()
            tracemalloc.stop()
            if scratch is not None:
                scratch.drop()
    return samples


def plot(samples: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["t"] / 60 for s in samples]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(minutes, [s["rss"] / 2**20 for s in samples], label="resident set (MiB)")
    ax.plot(minutes, [s["traced"] / 2**20 for s in samples], label="Python allocations (MiB)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--load", type=int, default=1, help="multiple of the specification's 3 491 values/s")
    parser.add_argument("--sink", choices=["sqlite", "postgresql", "null"], default="sqlite")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=30.0)
    parser.add_argument(
        "--fill", type=int, default=STEADY_ROWS_PER_TAG, help="rows per tag the table holds before the run"
    )
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of memory over time")
    parser.add_argument("--csv", type=Path, default=None, help="write the samples as CSV")
    parser.add_argument(
        "--wal",
        choices=["interval", "always", "off"],
        default="interval",
        help="wal.durability (the service's default: interval)",
    )
    parser.add_argument(
        "--no-tracemalloc",
        dest="tracemalloc",
        action="store_false",
        help="do not trace Python allocations (tracing costs CPU: use this for the CPU-per-value figure)",
    )
    args = parser.parse_args()
    rate = SPEC_TAGS * args.load
    print(f"machine: {machine()}")
    print(
        f"load: {rate} values/s into {args.sink} for {args.seconds:.0f} s,"
        f" sampled every {args.sample_s:.0f} s, write-ahead log {args.wal},"
        f" the table holding {args.fill} rows per tag first"
    )
    samples = run(args)
    steady = [s for s in samples if s["t"] >= args.warmup_s]
    rss_slope = slope_per_hour([(s["t"], s["rss"]) for s in steady])
    traced_slope = slope_per_hour([(s["t"], s["traced"]) for s in steady])
    last = samples[-1]
    print(
        f"resident set after warm-up: {min(s['rss'] for s in steady) / 2**20:.1f} .. "
        f"{max(s['rss'] for s in steady) / 2**20:.1f} MiB, slope {rss_slope / 2**20:+.2f} MiB/hour"
    )
    print(
        f"Python allocations after warm-up: {min(s['traced'] for s in steady) / 2**20:.1f} .. "
        f"{max(s['traced'] for s in steady) / 2**20:.1f} MiB, slope {traced_slope / 2**20:+.2f} MiB/hour"
    )
    tracing = "on" if args.tracemalloc else "off"
    first = steady[0] if len(steady) > 1 else samples[0]
    cpu, values, span = (
        last["cpu"] - first["cpu"],
        last["accepted"] - first["accepted"],
        last["t"] - first["t"],
    )
    # After the warm-up: the first seconds pay for what runs once (tables created, modules imported
    # lazily, caches filled), which is not the cost of a value at this load.
    print(
        f"CPU: {cpu / values * 1e6:.1f} us per value "
        f"({cpu / span * 100:.1f} % of one core after warm-up, tracemalloc {tracing}; "
        f"whole run {last['cpu'] / last['t'] * 100:.1f} %)"
    )
    print(
        f"values: accepted {last['accepted']:.0f}, written {last['written']:.0f},"
        f" backed up {last['backed_up']:.0f}"
    )
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(samples[0]))
            writer.writeheader()
            writer.writerows(samples)
    if args.plot:
        plot(samples, args.plot, f"{rate} values/s into {args.sink}")
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
