"""Fewer cyclic garbage collections while a bulk job runs.

CPython's cyclic collector runs its youngest generation every 700 net allocations of container
objects. A replay makes several per row (the fields, the value, the row), all of them tuples and
lists of strings that never form a cycle and that reference counting frees, so each collection
walks the batches still in flight for nothing and promotes them to older generations, which are
then walked again. Raising the first threshold while the job runs leaves reference counting to do
what it does anyway. Four alternating pairs of replays into PostgreSQL: 5.6 - 6.2 us of the
process's CPU per row against 5.3 - 5.6 with it, and 0.85 - 0.94 of plain COPY against 0.88 - 1.03
(into SQLite 0.91 - 0.98 against 0.93 - 0.98; docs/benchmarks.md, "Replay"). Cycles are still
collected, only less often.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

BULK_FIRST_THRESHOLD = 50_000
"""Allocations between two collections of the youngest generation while a bulk job runs (CPython's
default is 700): a few hundred rows' objects, so at most a few megabytes wait for a collection."""


@contextmanager
def fewer_collections(first_threshold: int = BULK_FIRST_THRESHOLD) -> Iterator[None]:
    """Collect the youngest generation every ``first_threshold`` allocations inside the block, then
    restore the thresholds found. Leaves a higher threshold, or a disabled collector, as it is (an
    embedding application's own choice)."""
    before = gc.get_threshold()
    if not gc.isenabled() or before[0] == 0 or before[0] >= first_threshold:
        yield
        return
    gc.set_threshold(first_threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
