"""The writer tells a sink which attempt it is making, so a sink's trace span can carry it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from collector.backup import CsvSpool
from collector.buffer import TagBuffer
from collector.model import TagValue
from collector.retry import RetryPolicy
from collector.sinks.base import WRITE_ATTEMPT, TransientSinkError, WriteResult
from collector.spool_format import SpoolKind
from collector.writer import BatchWriter


class FlakySink:
    """Fails the first ``failures`` writes with a connection-class error, then stores the batch."""

    system_name = "sqlite"
    table = "TAG_DATA"

    def __init__(self, failures: int) -> None:
        self._failures = failures
        self.attempts_seen: list[int] = []
        self.stored: list[TagValue] = []
        self.done = threading.Event()

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        self.attempts_seen.append(WRITE_ATTEMPT.get())
        if len(self.attempts_seen) <= self._failures:
            raise TransientSinkError("connection reset", code="DPY-4011")
        self.stored.extend(batch)
        self.done.set()
        return WriteResult(written=len(batch))

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


def test_each_attempt_of_a_batch_is_numbered_for_the_sink(tmp_path: Path) -> None:
    buffer = TagBuffer(100, batch_size=3)
    sink = FlakySink(failures=2)
    writer = BatchWriter(
        buffer,
        sink,
        CsvSpool(tmp_path, kind=SpoolKind.BACKUP),
        CsvSpool(tmp_path, kind=SpoolKind.REJECTED),
        flush_interval_s=0.01,
        retry=RetryPolicy.of(3, [0.01]),
        workers=1,
        spill=False,
    )
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    buffer.put_many([TagValue(f"T{i}", float(i), stamp) for i in range(3)])
    writer.start()
    try:
        assert sink.done.wait(10)
    finally:
        writer.stop(5)
    assert sink.attempts_seen == [1, 2, 3]
    assert len(sink.stored) == 3
    # Outside a write the sink sees the default: a first attempt.
    assert WRITE_ATTEMPT.get() == 1
