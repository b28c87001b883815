"""Helpers for the write-ahead log tests: values to log, a clock to move by hand, a simulated crash."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from collector.model import TagValue
from collector.wal import WriteAheadLog

BASE = datetime(2025, 11, 2, 8, 0, tzinfo=UTC)


def poll(index: int, size: int = 10) -> list[TagValue]:
    """One poll batch; every value is unique by (tag_name, timestamp) and says where it came from."""
    stamp = BASE + timedelta(seconds=index)
    return [
        TagValue(f"g{index % 7}.tag{j}", index * 1000 + j, stamp, "BAD" if j == size - 1 else "GOOD")
        for j in range(size)
    ]


class ManualClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def crash(wal: WriteAheadLog) -> None:
    """What SIGKILL leaves: the bytes already written stay (the page cache keeps them), nothing else
    runs, and the directory lock is gone with the process."""
    for fd in [wal._fd, *wal._retired, wal._lock_fd]:
        if fd is not None:
            os.close(fd)
    wal._fd = None
    wal._retired = []
    wal._lock_fd = None
    wal._closed = True


def feed(wal: WriteAheadLog) -> list[TagValue]:
    return [value for batch in wal.recovered_batches() for value in batch]
