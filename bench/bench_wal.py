"""What the write-ahead log costs the whole service, measured in one run against the same service
with the log off.

    python3 bench/bench_wal.py [--sink sqlite|postgresql] [--values 200000] [--seconds 20]
                               [--fsyncs 300]

1. Throughput: every value of ``--values`` pushed through the buffer, the writers and the sink into
   a fresh table, with the log off and on (``interval`` durability: an append per poll reaches the
   OS, a group-commit fsync every 0.2 s), alternating, best of two each. The ratio on/off is the
   figure (the aim is at least 0.9).
2. CPU at the specification's load: the whole service in this process (simulator at 3 491 values/s,
   intake, log, writers, SQLite or PostgreSQL) for ``--seconds`` after a warm-up, log off and on:
   CPU microseconds per value and percent of one core.
3. fsync latency: the log's own fsync histogram from the CPU run, and ``--fsyncs`` appends of one
   poll (350 values) with ``always`` durability, each timed (append + fdatasync): p50, p90, p99, max.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_endurance import NullSink, cpu_seconds
from bench.common import PG_DSN, PostgresScratchTable, machine, polls, sink_section, timed_drain
from collector.backup import CsvSpool
from collector.buffer import TagBuffer
from collector.config import Config
from collector.logged_buffer import LoggedBuffer
from collector.model import TagValue
from collector.service import CollectorService
from collector.sinks.base import Sink
from collector.sinks.sqlite import SqliteSink
from collector.spool_format import SpoolKind
from collector.wal import FSYNC_BUCKETS_S, Durability, WalStats, WriteAheadLog
from collector.writer import BatchWriter

BATCH = 500
SPEC_TAGS = 3491


def make_sink(kind: str, directory: Path, table: str) -> Sink:
    if kind == "postgresql":
        from collector.sinks.postgresql import PostgresSink

        return PostgresSink(PG_DSN, table=table, pool_size=5)
    return SqliteSink(directory / "pipeline.db")


def throughput(directory: Path, data: list[list[TagValue]], kind: str, table: str, logged: bool) -> float:
    """Values per second through buffer -> writers -> sink, with or without the log in front."""
    total = sum(len(p) for p in data)
    wal: WriteAheadLog | None = None
    buffer: TagBuffer
    if logged:
        wal = WriteAheadLog(directory / "wal")
        wal.open()
        buffer = LoggedBuffer(wal, total + 1, batch_size=BATCH)
    else:
        buffer = TagBuffer(total + 1, batch_size=BATCH)
    sink = make_sink(kind, directory, table)
    sink.ping()
    writer = BatchWriter(
        buffer,
        sink,
        CsvSpool(directory / "backup"),
        CsvSpool(directory / "backup", kind=SpoolKind.REJECTED),
        workers=2,
        spill=False,
        on_settled=buffer.settled if isinstance(buffer, LoggedBuffer) else None,
    )
    writer.start()
    if wal is not None:
        assert not list(wal.recovered_batches())  # a fresh directory: nothing to recover
        wal.start()
    elapsed = timed_drain(buffer, writer, data, total)
    writer.stop()
    sink.close()
    if wal is not None:
        wal.close()
        assert wal.stats().unfinished == 0
    assert writer.stats().written == total
    return total / elapsed


def service_cpu(
    kind: str, table: str, seconds: float, durability: str
) -> tuple[float, float, WalStats | None]:
    """CPU microseconds per value and percent of one core for the whole service at 3 491 values/s."""
    directory = Path(tempfile.mkdtemp(prefix="bench-wal-cpu-"))
    try:
        config = Config.model_validate(
            {
                "source": {"type": "simulator", "tags": SPEC_TAGS, "groups": 10},
                "sink": sink_section(kind, directory, table),
                "backup": {"dir": str(directory / "backup")},
                "wal": {"durability": durability, "dir": str(directory / "wal")},
                "api": {"enabled": False},
                "logging": {"level": "WARNING"},
            }
        )
        service = CollectorService(config, sink=NullSink() if kind == "null" else None)
        service.start()
        try:
            time.sleep(3.0)  # warm-up: imports settled, the first batches written
            accepted0, cpu0, wall0 = service.snapshot().accepted, cpu_seconds(), time.monotonic()
            time.sleep(seconds)
            accepted, cpu, wall = service.snapshot().accepted, cpu_seconds(), time.monotonic()
            wal_stats = service.wal.stats() if service.wal is not None else None
        finally:
            service.stop()
        values = accepted - accepted0
        return (cpu - cpu0) / values * 1e6, (cpu - cpu0) / (wall - wall0) * 100, wal_stats
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def always_appends(count: int, size: int) -> list[float]:
    """Seconds each append of one poll takes with ``always`` durability (write + fdatasync)."""
    directory = Path(tempfile.mkdtemp(prefix="bench-wal-fsync-"))
    try:
        wal = WriteAheadLog(directory, durability=Durability.ALWAYS)
        wal.open()
        timings = []
        for poll in polls(count, size):
            started = time.perf_counter()
            wal.append(poll)
            timings.append(time.perf_counter() - started)
        wal.close()
        return timings
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def histogram_line(stats: WalStats) -> str:
    parts = []
    previous = 0
    for bound, cumulative in zip(FSYNC_BUCKETS_S, stats.fsync_buckets, strict=True):
        if cumulative - previous:
            parts.append(f"<={bound * 1000:g} ms: {cumulative - previous}")
        previous = cumulative
    if stats.fsyncs - previous:
        parts.append(f">{FSYNC_BUCKETS_S[-1] * 1000:g} ms: {stats.fsyncs - previous}")
    mean = stats.fsync_seconds_sum / stats.fsyncs * 1000 if stats.fsyncs else 0.0
    return f"{stats.fsyncs} fsyncs, mean {mean:.2f} ms; " + ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sink", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--values", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fsyncs", type=int, default=300)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    data = polls(args.values // 350, 350)
    scratch = PostgresScratchTable("bench_wal") if args.sink == "postgresql" else None
    table = scratch.name if scratch else "TAG_DATA"
    try:
        best: dict[bool, float] = {False: 0.0, True: 0.0}
        for logged in (False, True, False, True):
            if scratch is not None:
                scratch.truncate()
            with tempfile.TemporaryDirectory() as run_dir:
                rate = throughput(Path(run_dir), data, args.sink, table, logged)
            best[logged] = max(best[logged], rate)
        print(f"throughput into {args.sink}, {len(data) * 350} values, 2 workers, best of 2:")
        print(f"  log off:                {best[False]:>10,.0f} values/s")
        ratio = best[True] / best[False]
        print(f"  log on (interval):      {best[True]:>10,.0f} values/s   ratio on/off {ratio:.2f}")

        print(f"whole service at {SPEC_TAGS} values/s into {args.sink}, {args.seconds:g} s after warm-up:")
        stats: WalStats | None = None
        for durability in ("off", "interval"):
            if scratch is not None:
                scratch.truncate()
            per_value, percent, wal_stats = service_cpu(args.sink, table, args.seconds, durability)
            stats = wal_stats or stats
            print(f"  log {durability:<8}  CPU {per_value:6.2f} us/value   {percent:5.2f} % of one core")
        if stats is not None:
            print(f"  group-commit fsync (interval, 0.2 s): {histogram_line(stats)}")
    finally:
        if scratch is not None:
            scratch.drop()

    timings = always_appends(args.fsyncs, 350)
    ms = [t * 1000 for t in timings]
    print(
        f"append + fdatasync per poll (always, {len(ms)} polls of 350 values):"
        f" p50 {percentile(ms, 0.5):.2f} ms  p90 {percentile(ms, 0.9):.2f} ms"
        f"  p99 {percentile(ms, 0.99):.2f} ms  max {max(ms):.2f} ms"
    )


if __name__ == "__main__":
    main()
