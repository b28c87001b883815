"""One writer test rig: a buffer, a BatchWriter over a given sink, and its backup and rejected files.

Every test that drives the real writer builds it here, so the writer's wiring lives in one place;
the ``writer_rigs`` fixture starts rigs and, at the end of the test, stops them and fails the test
if a writer thread is still alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

from collector.backup import CsvSpool
from collector.buffer import TagBuffer
from collector.retry import RetryPolicy
from collector.sinks.base import Sink
from collector.sources.intake import IntakeStats
from collector.spool_format import SpoolKind
from collector.stats import Snapshot
from collector.writer import BatchWriter, WriterListener, WriterStats
from tests.evidence import read_spool_rows
from tests.fakes import BlockingSink


class WriterRig:
    """A buffer and a writer draining it into ``sink``; backup and rejected files in ``backup_dir``
    (``directory/backup`` unless given). Unit-test defaults: a short flush interval and the real
    1/2/4 s retry schedule, meant to be run on an injected ``clock``."""

    def __init__(
        self,
        directory: Path,
        sink: Sink,
        *,
        capacity: int = 10_000,
        batch_size: int = 100,
        workers: int = 2,
        flush_interval_s: float = 0.02,
        retry: RetryPolicy | None = None,
        probe_interval_s: float = 5.0,
        spill_level: int | None = None,
        clock: Callable[[], float] | None = None,
        listener: WriterListener | None = None,
        tracer: trace.Tracer | None = None,
        backup_dir: Path | None = None,
        fallback_dir: Path | None = None,
    ) -> None:
        self.clock = clock or time.monotonic
        self.sink = sink
        self.buffer = TagBuffer(capacity, batch_size=batch_size, spill_level=spill_level, clock=self.clock)
        self.backup_dirs = [backup_dir or directory / "backup"] + ([fallback_dir] if fallback_dir else [])
        self.backup = CsvSpool(self.backup_dirs[0], fallback_dir=fallback_dir, clock=self.clock)
        self.rejected = CsvSpool(self.backup_dirs[0], kind=SpoolKind.REJECTED, fallback_dir=fallback_dir)
        self.writer = BatchWriter(
            self.buffer,
            sink,
            self.backup,
            self.rejected,
            flush_interval_s=flush_interval_s,
            retry=retry or RetryPolicy(),
            workers=workers,
            probe_interval_s=probe_interval_s,
            spill=spill_level is not None,
            listener=listener,
            tracer=tracer,
            clock=self.clock,
        )

    def start(self) -> WriterRig:
        self.writer.start()
        return self

    def stop(self, timeout_s: float = 5.0, *, grace_s: float = 5.0) -> int:
        """Stop the writer (drain, back up what is left) and close the files; fails if a writer
        thread outlives it. Returns what was pending when it began."""
        if isinstance(self.sink, BlockingSink):  # a hung database answers at last
            self.sink.release.set()
        pending = self.writer.stop(timeout_s, grace_s=grace_s)
        self.backup.close()
        self.rejected.close()
        assert not any(t.is_alive() for t in self.writer.threads), "writer thread leaked"
        return pending

    def stats(self) -> WriterStats:
        return self.writer.stats()

    def snapshot(self) -> Snapshot:
        """The service's snapshot as if every value had come through intake valid."""
        stats = self.writer.stats()
        intake = IntakeStats(0, stats.buffer_inserted, stats.buffer_inserted, 0)
        return Snapshot(stats, intake, self.backup.stats(), self.rejected.stats())

    def backup_rows(self) -> list[dict[str, str]]:
        return read_spool_rows(self.backup_dirs, "backup")

    def rejected_rows(self) -> list[dict[str, str]]:
        return read_spool_rows(self.backup_dirs, "rejected")


@pytest.fixture
def writer_rigs(tmp_path: Path) -> Iterator[Callable[..., WriterRig]]:
    """Build and start rigs in the test's directory; each is stopped at the end of the test."""
    made: list[WriterRig] = []

    def make(sink: Sink, **options: Any) -> WriterRig:
        rig = WriterRig(tmp_path, sink, **options)
        made.append(rig)
        return rig.start()

    yield make
    for rig in made:
        rig.stop(2.0, grace_s=2.0)
