"""The interpreter's settings while the service or a bulk job runs: a short switch interval and
fewer cyclic garbage collections, each set from start to stop and given back after.

**Fewer collections.** CPython's cyclic collector runs its youngest generation every 700 net
allocations of container objects. The pipeline makes several per value (the value's tuple, the
batches' lists, a replayed row's fields), none of which ever form a cycle and all of which
reference counting frees, so each collection walks the values still in flight for nothing and
promotes them to older generations, which are then walked again. Raising the first threshold
while the work runs leaves reference counting to do what it does anyway; cycles are still
collected, only less often. Measured (docs/benchmarks.md, "Overload" and "Replay"), in alternating
runs:

- the whole service offered three times what SQLite takes: 0.79 - 0.85 of the sink's own rate
  into the table against 0.90 - 1.00 with it;
- replay into PostgreSQL: 5.6 - 6.2 us of the process's CPU per row against 5.3 - 5.6, and
  0.85 - 0.94 of plain COPY against 0.88 - 1.03 (into SQLite 0.91 - 0.98 against 0.93 - 0.98).

**A short switch interval**: see :data:`GIL_SWITCH_INTERVAL_S`.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

GIL_SWITCH_INTERVAL_S = 0.0001
"""The interpreter's switch interval while the service runs (Python's default is 5 ms). A writer
that comes back from the database (every call that releases the interpreter lock does: a SQLite
statement two or three times, a PostgreSQL round trip) waits for the lock until a busy producer
thread has run this long. Under overload, rows/s into SQLite rose by about a quarter from 1 ms to
0.1 ms in alternating runs (and by half from 5 ms to 1 ms before); at the specification's load the
CPU per value is the same within the runs' noise (docs/benchmarks.md, "Overload")."""

BULK_FIRST_THRESHOLD = 50_000
"""Allocations between two collections of the youngest generation while the work runs (CPython's
default is 700): at the specification's 3 491 values/s, one collection every few seconds; the
objects waiting for one take a few megabytes at most."""


def raise_first_threshold(first_threshold: int = BULK_FIRST_THRESHOLD) -> Callable[[], None] | None:
    """Collect the youngest generation every ``first_threshold`` allocations from now on, and
    return what restores the thresholds found; None (and nothing changed) when the collector is
    off or already collects as seldom (an embedding application's own choice)."""
    before = gc.get_threshold()
    if not gc.isenabled() or before[0] == 0 or before[0] >= first_threshold:
        return None
    gc.set_threshold(first_threshold, *before[1:])
    return lambda: gc.set_threshold(*before)


@contextmanager
def fewer_collections(first_threshold: int = BULK_FIRST_THRESHOLD) -> Iterator[None]:
    """:func:`raise_first_threshold` for the block, the thresholds restored after it."""
    restore = raise_first_threshold(first_threshold)
    try:
        yield
    finally:
        if restore is not None:
            restore()


class InterpreterTuning:
    """The service's settings for the interpreter: applied at start, given back at stop. A shorter
    switch interval than the one in force, and a higher first threshold than the collector's; either
    left alone when ``None`` (an application that embeds the service and tunes it itself)."""

    def __init__(self, switch_interval_s: float | None, gc_first_threshold: int | None) -> None:
        self._switch_interval_s = switch_interval_s
        self._gc_first_threshold = gc_first_threshold
        self._switch_interval_before: float | None = None
        self._restore_gc: Callable[[], None] | None = None

    def apply(self) -> None:
        interval = self._switch_interval_s
        if interval is not None and sys.getswitchinterval() > interval:
            self._switch_interval_before = sys.getswitchinterval()
            sys.setswitchinterval(interval)
        if self._gc_first_threshold is not None:
            self._restore_gc = raise_first_threshold(self._gc_first_threshold)

    def restore(self) -> None:
        if self._switch_interval_before is not None:
            sys.setswitchinterval(self._switch_interval_before)
            self._switch_interval_before = None
        if self._restore_gc is not None:
            self._restore_gc()
            self._restore_gc = None
