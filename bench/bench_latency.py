"""End-to-end latency at the specification's load: collection timestamp to database commit.

    python3 bench/bench_latency.py [--seconds 60] [--tags 3491] [--sink sqlite|postgresql] [--workers 2]

Runs the service in this process with the simulator at ``--tags`` values per second and records,
for every value the database accepted, the time from its collection timestamp to the moment its
batch's commit returned. Prints p50, p90, p99 and max, and the write duration per batch.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PostgresScratchTable, machine, sink_section
from collector.config import Config
from collector.service import CollectorService
from collector.writer import BatchAttempt, WriterListener


class LatencyRecorder(WriterListener):
    """A writer listener that keeps every committed value's end-to-end latency."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.durations: list[float] = []
        self._lock = threading.Lock()

    def batch_attempted(self, event: BatchAttempt) -> None:
        if not event.ok:
            return
        now = datetime.now(UTC)
        ages = [(now - value.timestamp).total_seconds() for value in event.batch]
        with self._lock:
            self.latencies.extend(ages)
            self.durations.append(event.duration_s)


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--tags", type=int, default=3491)
    parser.add_argument("--sink", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of the latency distribution")
    args = parser.parse_args()
    recorder = LatencyRecorder()
    scratch = PostgresScratchTable("bench_latency") if args.sink == "postgresql" else None
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        config = Config.model_validate(
            {
                "source": {"type": "simulator", "tags": args.tags, "groups": 10},
                "writer": {"workers": args.workers},
                "sink": sink_section(args.sink, directory, scratch.name if scratch else "TAG_DATA"),
                "backup": {"dir": str(directory / "backup")},
                "api": {"enabled": False},
                "logging": {"level": "WARNING"},
            }
        )
        service = CollectorService(config, listener=recorder)
        try:
            service.start()
            time.sleep(args.seconds)
        finally:
            report = service.stop()
            if scratch is not None:
                scratch.drop()
    ordered = sorted(recorder.latencies)
    durations = sorted(recorder.durations)
    snap = report.snapshot
    print(f"machine: {machine()}")
    print(f"load: {args.tags} values/s for {args.seconds:.0f} s into {args.sink}, {args.workers} writers")
    print(
        f"values committed: {len(ordered)} (written {snap.writer.written}, backed up {snap.writer.backed_up})"
    )
    p50, p90, p99 = (percentile(ordered, f) for f in (0.5, 0.9, 0.99))
    print(f"end-to-end latency: p50 {p50:.3f} s  p90 {p90:.3f} s  p99 {p99:.3f} s  max {ordered[-1]:.3f} s")
    d50, d99 = (percentile(durations, f) * 1e3 for f in (0.5, 0.99))
    mean = len(ordered) / max(1, len(durations))
    batches = len(durations)
    print(
        f"write duration per batch: p50 {d50:.1f} ms  p99 {d99:.1f} ms"
        f"  ({batches} batches, mean {mean:.0f} values)"
    )

    if args.plot:
        plot(ordered, args.plot, f"{args.tags} values/s into {args.sink}, {args.workers} writers")
        print(f"plot: {args.plot}")


def plot(ordered: list[float], path: Path, title: str) -> None:
    """The cumulative distribution of end-to-end latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = max(1, len(ordered) // 2000)
    xs = [ordered[i] * 1e3 for i in range(0, len(ordered), step)]
    ys = [i / len(ordered) * 100 for i in range(0, len(ordered), step)]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(xs, ys)
    for fraction, label in ((0.5, "p50"), (0.99, "p99")):
        x = percentile(ordered, fraction) * 1e3
        ax.axvline(x, linestyle="--", alpha=0.5)
        ax.text(x, 5, f" {label} {x:.0f} ms", rotation=90, va="bottom")
    ax.set_xlabel("collection timestamp to commit (ms)")
    ax.set_ylabel("% of values")
    ax.set_title(f"End-to-end latency: {title}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
