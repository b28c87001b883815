"""A stand-in polling engine: puts PollingData on a DataQueue exactly as the real one would.

``groups`` polling groups of ``tags_per_group`` tags each poll every ``interval_s`` seconds, their
polls spread evenly across the interval as a real engine's timers drift apart. Tags follow simple
patterns by their number (sine, ramp, random walk, a text status, a boolean), a ``bad_ratio`` of
readings fail as a polling error would (quality BAD), and a ``seed`` makes a run reproducible.

With a ``ledger`` path, every value generated is also written to a CSV file
(``tag_name,tag_value,timestamp,quality``), so a test can prove where each one went.
"""

from __future__ import annotations

import csv
import math
import queue
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from collector.model import PollingData, format_timestamp
from collector.spool_format import format_value

LEDGER_HEADER = ("tag_name", "tag_value", "timestamp", "quality")
STATUS_TEXTS = ("RUNNING", "STOPPED", "IDLE", "ALARM", "MAINTENANCE")
READ_ERRORS = ("read timeout", "connection reset by PLC", "illegal data address")


def tag_name(group: int, tag: int) -> str:
    return f"G{group + 1:02d}.T{tag + 1:04d}"


def split_tags(total: int, groups: int) -> list[int]:
    """Spread ``total`` tags over ``groups`` as evenly as possible (the first groups get one more)."""
    base, extra = divmod(total, groups)
    return [base + (1 if g < extra else 0) for g in range(groups)]


class Simulator:
    """Generates polls on its own thread until stopped, or until ``max_polls`` cycles have run."""

    def __init__(
        self,
        data_queue: queue.Queue[object] | None = None,
        *,
        deliver: Callable[[PollingData], object] | None = None,
        groups: int = 10,
        tags_per_group: int | list[int] = 100,
        interval_s: float = 1.0,
        bad_ratio: float = 0.0,
        seed: int = 1,
        ledger: Path | str | None = None,
        cycles: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if groups < 1:
            raise ValueError("groups must be at least 1")
        sizes = tags_per_group if isinstance(tags_per_group, list) else [tags_per_group] * groups
        if len(sizes) != groups or min(sizes) < 0:
            raise ValueError("tags_per_group must give a non-negative size for every group")
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        if not 0 <= bad_ratio <= 1:
            raise ValueError("bad_ratio must be between 0 and 1")
        if (data_queue is None) == (deliver is None):
            raise ValueError("give either a data queue or a deliver function")
        self._queue = data_queue
        self._deliver = deliver
        self._names = [[tag_name(g, t) for t in range(n)] for g, n in enumerate(sizes)]
        self._interval = interval_s
        self._bad_ratio = bad_ratio
        self._random = random.Random(seed)
        self._walk = {name: self._random.uniform(0, 100) for group in self._names for name in group}
        self._ledger_path = Path(ledger) if ledger is not None else None
        self._ledger: IO[str] | None = None
        self._cycles = cycles
        self._clock = clock
        self._now = now
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulator", daemon=True)
        self._lock = threading.Lock()
        self._generated = 0
        self._polls = 0

    @property
    def rate(self) -> float:
        """Values per second this simulator produces."""
        return sum(len(group) for group in self._names) / self._interval

    @property
    def generated(self) -> int:
        with self._lock:
            return self._generated

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def start(self) -> None:
        if self._ledger_path is not None:
            self._ledger_path.parent.mkdir(parents=True, exist_ok=True)
            self._ledger = open(self._ledger_path, "w", encoding="utf-8", newline="")  # noqa: SIM115
            csv.writer(self._ledger, lineterminator="\n").writerow(LEDGER_HEADER)
        self._thread.start()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until a run of ``cycles`` has finished; True if it has."""
        return self._done.wait(timeout_s)

    def stop(self) -> None:
        """Stop generating; every poll generated so far is on the queue and in the ledger."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._ledger is not None:
            self._ledger.flush()
            self._ledger.close()
            self._ledger = None

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._done.set()

    def _loop(self) -> None:
        groups = len(self._names)
        step = self._interval / groups
        start = self._clock()
        cycle = 0
        ledger = csv.writer(self._ledger, lineterminator="\n") if self._ledger is not None else None
        while self._cycles is None or cycle < self._cycles:
            for group in range(groups):
                due = start + cycle * self._interval + group * step
                delay = due - self._clock()
                if delay > 0 and self._stop.wait(delay):
                    return
                if self._stop.is_set():
                    return
                poll = self.poll(group, cycle)
                if self._deliver is not None:
                    # Handed straight to the service: once this returns the values are accepted
                    # (in the write-ahead log when it is on), so the ledger lists exactly what the
                    # service accepted, and a killed process can be checked against it.
                    self._deliver(poll)
                    if ledger is not None:
                        self._record(ledger, poll)
                else:
                    if ledger is not None:
                        self._record(ledger, poll)
                    assert self._queue is not None
                    self._queue.put(poll)
                with self._lock:
                    self._generated += len(poll)
                    self._polls += 1
            cycle += 1

    def poll(self, group: int, cycle: int) -> PollingData:
        """One poll of one group: what a polling engine would put on the DataQueue."""
        stamp = self._now()
        values: dict[str, object] = {}
        errors: dict[str, str] = {}
        rnd = self._random
        for index, name in enumerate(self._names[group]):
            if self._bad_ratio and rnd.random() < self._bad_ratio:
                errors[name] = READ_ERRORS[index % len(READ_ERRORS)]
                continue
            values[name] = self._value(name, index, cycle)
        return PollingData(f"group{group + 1:02d}", stamp, values, errors)

    def _value(self, name: str, index: int, cycle: int) -> object:
        kind = index % 10
        if kind <= 4:  # sine waves of different periods
            period = 20 + 7 * (index % 13)
            return round(50 + 40 * math.sin(2 * math.pi * cycle / period + index), 3)
        if kind == 5:  # a ramp that wraps, like a counter
            return round((cycle * 0.5 + index) % 1000, 1)
        if kind in (6, 7):  # random walk, like a process temperature
            walked = self._walk[name] + self._random.gauss(0, 0.5)
            self._walk[name] = walked
            return round(walked, 3)
        if kind == 8:
            return STATUS_TEXTS[(cycle // 10 + index) % len(STATUS_TEXTS)]
        return (cycle + index) % 7 < 3

    def _record(self, ledger: Any, poll: PollingData) -> None:
        stamp = format_timestamp(poll.timestamp)
        rows = [(name, format_value(value), stamp, "GOOD") for name, value in poll.values.items()]
        rows.extend((name, "", stamp, "BAD") for name in poll.errors)
        ledger.writerows(rows)
        # Flushed per poll: with a queue, before the poll is queued (the ledger holds at least every
        # value the collector could have received); with ``deliver``, once it was accepted.
        assert self._ledger is not None
        self._ledger.flush()
