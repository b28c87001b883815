"""Overload: offered more than the database takes, does the database still get its full rate?

    python3 bench/bench_overload.py [--sink sqlite|postgresql] [--load 3] [--runs 5] [--seconds 10]
                                    [--sweep 0.5 1 2 4] [--tags 3491] [--fill 200]
                                    [--plot docs/img/overload-sqlite.png]

The plant is ``--tags`` tags (the specification's 3 491 by default) in 10 groups; the offered rate
is set by how often they are polled. An insert's cost depends on how many rows each tag already
has: a batch's rows land in as many places of the primary key (tag, timestamp) as it has tags, and
every page they change is written to the database's log at commit. Into SQLite the rate falls by
a factor of four or five between a fresh table and one with 150 rows per tag, where it settles. So
every table here is first filled with ``--fill`` rows per tag (in key order, untimed), the state a
plant's table is in after a few minutes and for the rest of its life.

The sink's own pipeline rate: values of the plant's tags, generated beforehand, pushed through
``TagBuffer.put_many`` -> ``BatchWriter`` -> the sink with nothing else running (a buffer large
enough to hold them all, no spill guard), at the configured number of writers, into such a filled
table. It is measured once to set the offered rate, and in every run just before and just after
the overloaded window, into that run's own table: their mean is the run's reference.

Each run is the whole service in this process, as ``collector run`` does it (simulator thread,
intake, the write-ahead log, buffer, spill guard, writers, metrics; the HTTP API off), with the
simulator offered ``--load`` times the sink's rate, ``--runs`` times. Over ``--seconds`` after a
warm-up it measures rows/s into the table, values/s saved to backup by the spill guard and values/s
dropped by the ring; the figure is rows/s into the table divided by the reference (the aim: at
least 0.9 in every run). After each run the table's rows and the backup files' rows are counted
and compared with the service's counters.

``--sweep`` adds one run at each of those loads; all runs go into the overload plot (offered rate
on x; rows/s into the table, spilled and dropped on y), which the script saves with matplotlib.
The machine may be shared, so every figure is a ratio to the sink's rate measured in the same run.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PG_DSN,
    STEADY_ROWS_PER_TAG,
    PostgresScratchTable,
    as_the_service_runs,
    fill_plant,
    machine,
    sink_section,
)
from collector.backup import CsvSpool
from collector.buffer import TagBuffer
from collector.config import Config
from collector.interpreter import GIL_SWITCH_INTERVAL_S
from collector.inventory import ContentsCache, scan
from collector.model import TagValue
from collector.service import CollectorService
from collector.sinks import build_sink
from collector.sinks.factory import writer_workers
from collector.sources.intake import Intake
from collector.sources.simulator import Simulator, split_tags
from collector.spool_format import SpoolKind
from collector.writer import BatchWriter

ROOT = Path(__file__).resolve().parents[1]
GROUPS = 10


@dataclass(frozen=True, slots=True)
class Run:
    """What one overloaded run did, per second of its measured window."""

    load: float
    alone_before: float
    """The sink's own pipeline rate into this run's table just before the run (a fresh table)."""
    alone_after: float
    """The same right after the run, on the table as the run left it."""
    offered: float
    generated: float
    written: float
    spilled: float
    dropped: float
    cpu: float
    """Share of one core the whole process used."""
    checked: bool
    """The table's rows and the backup files' rows equal the service's counters."""
    machine_load: float = 0.0
    """The machine's one-minute load average at the end of the run (other work shares it)."""

    @property
    def alone(self) -> float:
        """The reference: the sink's own rate on this table, the mean of before and after the run
        (the run's table grows from one state to the other while it is measured)."""
        return (self.alone_before + self.alone_after) / 2

    @property
    def ratio(self) -> float:
        return self.written / self.alone


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def simulated_values(
    count: int, *, tags: int | None = None, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
) -> list[TagValue]:
    """``count`` values exactly as the service's simulator and intake make them (the same tag mix
    and names, ``tags`` of them), with collection times from ``start``, 100 ms apart per poll, so
    that no two keys repeat."""
    tags = max(GROUPS, tags if tags is not None else count // 20)
    stamps = (start + timedelta(milliseconds=100 * i) for i in range(10**9))
    simulator = Simulator(
        queue.Queue(),  # polls are taken directly, never queued
        groups=GROUPS,
        tags_per_group=split_tags(tags, GROUPS),
        now=lambda: next(stamps),
    )
    scratch = TagBuffer(count + tags)
    intake = Intake(scratch, len)  # the simulator makes no invalid readings
    cycle = 0
    while len(scratch) < count:
        for group in range(GROUPS):
            intake.submit(simulator.poll(group, cycle))
        cycle += 1
    return scratch.take(count)


def config_for(
    kind: str,
    directory: Path,
    table: str,
    rate: int,
    workers: int | None,
    *,
    wal: str = "interval",
    tags: int = 3491,
) -> Config:
    """The service's configuration for a simulated plant of ``tags`` tags in ``GROUPS`` groups,
    polled as often as makes ``rate`` values/s."""
    writer = {"workers": workers} if workers else {}
    return Config.model_validate(
        {
            "source": {
                "type": "simulator",
                "tags": tags,
                "groups": GROUPS,
                "interval_s": tags / rate,
            },
            "writer": writer,
            "sink": sink_section(kind, directory, table),
            "wal": {"durability": wal, "dir": str(directory / "wal")},
            "backup": {"dir": str(directory / "backup")},
            "api": {"enabled": False},
            "logging": {"level": "ERROR"},
        }
    )


@dataclass(frozen=True, slots=True)
class Alone:
    """The sink's own pipeline rate, and the share of one core the process used meanwhile (beside
    the overloaded runs' CPU, it says whether the machine has the cores for both at full rate)."""

    rate: float
    cpu: float


def sink_alone(
    kind: str,
    directory: Path,
    table: str,
    values: list[TagValue],
    workers: int | None,
) -> Alone:
    """Values/s the pipeline puts into the table with nothing else running."""
    config = config_for(kind, directory, table, GROUPS * 10, workers)
    count = writer_workers(config.writer.workers, "workers" in config.writer.model_fields_set, kind)
    buffer = TagBuffer(len(values) + 1, batch_size=config.writer.batch_size)
    sink = build_sink(config.sink)
    sink.ping()  # open the database before the clock starts, as the service does at start
    writer = BatchWriter(
        buffer,
        sink,
        CsvSpool(directory / "backup"),
        CsvSpool(directory / "backup", kind=SpoolKind.REJECTED),
        flush_interval_s=config.writer.flush_interval_s,
        workers=count,
        spill=False,
    )
    writer.start()
    # With the interpreter's settings the service runs with, so that the two compare like with like.
    with as_the_service_runs():
        started, cpu0 = time.perf_counter(), cpu_seconds()
        for start in range(0, len(values), 1000):
            buffer.put_many(values[start : start + 1000])
        while writer.stats().written < len(values):
            time.sleep(0.001)
        elapsed = time.perf_counter() - started
        cpu = (cpu_seconds() - cpu0) / elapsed
    writer.stop()
    sink.close()
    stats = writer.stats()
    assert stats.written == len(values) and stats.backed_up == 0, stats
    return Alone(len(values) / elapsed, cpu)


def table_rows(kind: str, directory: Path, table: str) -> int:
    """Rows in the run's table (SQLite: ``TAG_DATA`` in the run's directory)."""
    if kind == "postgresql":
        import psycopg

        with psycopg.connect(PG_DSN) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone()
    else:
        import sqlite3

        with sqlite3.connect(directory / "tags.db") as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def overloaded(kind: str, table: str, rate: float, load: float, *, args: argparse.Namespace) -> Run:
    """One run of the whole service with the simulator offered ``load`` x ``rate``, with the sink's
    own rate into the same table measured before and after it (see :func:`alone_on`)."""
    tags = args.tags
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        prefill(kind, directory, table, tags, args.fill)
        alone_before = alone_on(kind, directory, table, tags, args, days=-1)
        stored_before = table_rows(kind, directory, table)
        config = config_for(
            kind,
            directory,
            table,
            round(rate * load),
            args.workers,
            wal=args.wal,
            tags=tags,
        )
        interval = args.switch_interval if args.switch_interval is not None else GIL_SWITCH_INTERVAL_S
        service = CollectorService(config, gil_switch_interval_s=interval)
        assert service.simulator is not None
        service.start()
        try:
            time.sleep(args.warmup_s)
            first, generated0, cpu0, t0 = (
                service.writer.stats(),
                service.simulator.generated,
                cpu_seconds(),
                time.monotonic(),
            )
            time.sleep(args.seconds)
            last, generated1, cpu1, t1 = (
                service.writer.stats(),
                service.simulator.generated,
                cpu_seconds(),
                time.monotonic(),
            )
        finally:
            report = service.stop()
        final = report.snapshot.writer
        backups = scan([directory / "backup"], contents=ContentsCache()).backup_rows
        checked = (
            report.snapshot.balanced()
            and table_rows(kind, directory, table) - stored_before == final.written
            and backups == final.backed_up
        )
        alone_after = alone_on(kind, directory, table, tags, args, days=1)
    span = t1 - t0
    return Run(
        load=load,
        alone_before=alone_before,
        alone_after=alone_after,
        offered=service.simulator.rate,
        generated=(generated1 - generated0) / span,
        written=(last.written - first.written) / span,
        spilled=(last.spilled - first.spilled) / span,
        dropped=(last.buffer_overflow - first.buffer_overflow) / span,
        cpu=(cpu1 - cpu0) / span,
        checked=checked,
        machine_load=os.getloadavg()[0],
    )


def prefill(kind: str, directory: Path, table: str, tags: int, rows_per_tag: int) -> None:
    """Fill the run's empty table to the steady state every measurement here starts from (see the
    module's doc), untimed."""
    fill_plant(kind, table if kind == "postgresql" else directory / "tags.db", tags, rows_per_tag)


def alone_on(
    kind: str, directory: Path, table: str, tags: int, args: argparse.Namespace, *, days: int
) -> float:
    """The sink's own pipeline rate into the run's table: ``--alone-values`` values of the plant's
    tags, stamped ``days`` from now (before or after the run's own), nothing else running."""
    values = simulated_values(args.alone_values, tags=tags, start=datetime.now(UTC) + timedelta(days=days))
    return sink_alone(kind, directory, table, values, args.workers).rate


def describe(run: Run) -> str:
    return (
        f"offered {run.offered:>9,.0f}/s ({run.load:.1f}x)  generated {run.generated:>9,.0f}/s  "
        f"alone before {run.alone_before:>8,.0f}/s after {run.alone_after:>8,.0f}/s  "
        f"into table {run.written:>8,.0f}/s  ratio {run.ratio:.2f}  "
        f"spilled {run.spilled:>8,.0f}/s  dropped {run.dropped:>8,.0f}/s  "
        f"CPU {run.cpu * 100:3.0f}%  load {run.machine_load:.1f}  "
        f"counts {'match' if run.checked else 'DIFFER'}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sink", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--load", type=float, default=3.0, help="offered rate / the sink's own rate")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window of each run")
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--alone-values", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=None, help="writer threads (default: the config's)")
    parser.add_argument("--sweep", type=float, nargs="*", default=[0.5, 1.0, 2.0, 4.0])
    parser.add_argument(
        "--wal", choices=["interval", "always", "off"], default="interval", help="wal.durability of the runs"
    )
    parser.add_argument("--tags", type=int, default=3491, help="the simulated plant's tags (10 groups)")
    parser.add_argument(
        "--fill", type=int, default=STEADY_ROWS_PER_TAG, help="rows per tag in every table before it is timed"
    )
    parser.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval (s)")
    parser.add_argument(
        "--plot", type=Path, default=None, help="PNG to draw (default docs/img/overload-<sink>.png)"
    )
    parser.add_argument("--no-plot", action="store_true")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)

    print(f"machine: {machine()}")
    workers = args.workers or writer_workers(Config().writer.workers, False, args.sink)
    interval = args.switch_interval if args.switch_interval is not None else GIL_SWITCH_INTERVAL_S
    print(
        f"sink: {args.sink}, {workers} writer(s), GIL switch interval {interval * 1e3:g} ms while the"
        f" service runs, write-ahead log {args.wal}, load average {os.getloadavg()[0]:.2f}\n"
        f"plant: {args.tags} tags in {GROUPS} groups; every table filled with {args.fill} rows per tag first"
    )
    values = simulated_values(args.alone_values, tags=args.tags, start=datetime.now(UTC) - timedelta(days=2))
    scratch = PostgresScratchTable("bench_overload") if args.sink == "postgresql" else None
    table = scratch.name if scratch is not None else "TAG_DATA"

    def alone() -> Alone:
        if scratch is not None:
            scratch.truncate()
        with tempfile.TemporaryDirectory() as tmp:
            prefill(args.sink, Path(tmp), table, args.tags, args.fill)
            return sink_alone(args.sink, Path(tmp), table, values, args.workers)

    try:
        # The offered rate is set once, from a first measurement, so every run gets the same
        # configuration; each run is then compared with the sink's rate into its own table,
        # measured just before and just after it.
        first = alone()
        calibration = first.rate
        print(
            f"sink alone (pipeline, {args.alone_values:,} values): {calibration:>9,.0f} values/s,"
            f" CPU {first.cpu * 100:.0f}% of one core"
        )
        runs: list[Run] = []
        for load in [args.load] * args.runs + list(args.sweep):
            if scratch is not None:
                scratch.truncate()
            run = overloaded(args.sink, table, calibration, load, args=args)
            runs.append(run)
            print(describe(run), flush=True)
    finally:
        if scratch is not None:
            scratch.drop()
    main_runs = [r.ratio for r in runs if r.load == args.load]
    print(
        f"at {args.load:g}x over {len(main_runs)} runs: rows/s into the table / the sink's own rate "
        f"min {min(main_runs):.2f}  median {statistics.median(main_runs):.2f}  max {max(main_runs):.2f}"
    )
    if not args.no_plot:
        path = args.plot or ROOT / "docs" / "img" / f"overload-{args.sink}.png"
        plot(runs, calibration, path, f"Overload into {'SQLite' if args.sink == 'sqlite' else 'PostgreSQL'}")
        print(f"plot: {path}")
    return 0 if all(r.checked for r in runs) else 1


def plot(runs: list[Run], rate: float, path: Path, title: str) -> None:
    """Offered rate on x; rows/s into the table, spilled and dropped on y: every run as a point,
    a line through the median at each offered rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_offered: dict[float, list[Run]] = {}
    for run in runs:
        by_offered.setdefault(run.offered, []).append(run)
    xs = sorted(by_offered)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.axhline(rate, color="gray", linestyle="--", label="the sink's own pipeline rate")
    ax.axhline(0.9 * rate, color="gray", linestyle=":", label="0.9 x that")
    series = (
        ("written", "o", "tab:blue", "rows/s into the table"),
        ("spilled", "s", "tab:orange", "spilled to backup /s"),
        ("dropped", "x", "tab:red", "dropped /s"),
        ("generated", ".", "tab:green", "generated /s"),
    )
    for name, marker, colour, label in series:
        medians = [statistics.median(getattr(r, name) for r in by_offered[x]) for x in xs]
        ax.plot(xs, medians, marker=marker, linestyle="-", color=colour, label=label)
        points = [(r.offered, getattr(r, name)) for r in runs]
        ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, color=colour, alpha=0.4)
    ax.set_xlabel("offered values/s")
    ax.set_ylabel("values/s")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
