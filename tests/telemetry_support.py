"""Fakes and helpers for the metrics, tracing and API tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collector.backup import SpoolStats
from collector.circuit import CircuitState, CircuitStatus
from collector.model import TagValue
from collector.retry import RetryPolicy
from collector.sinks.base import RowError, SinkError, WriteResult
from collector.sources.intake import IntakeStats
from collector.stats import Snapshot
from collector.writer import BatchAttempt, Destination, WriterListener, WriterStats
from tests.writer_rig import WriterRig


class ScriptedSink:
    """A sink whose calls follow a script: each entry is an error to raise, or None to write the
    batch (rows listed in ``reject`` come back as row errors). Past the script, writes succeed."""

    system_name = "sqlite"
    table = "TAG_DATA"

    def __init__(self, script: Sequence[SinkError | None] = (), *, reject: Sequence[int] = ()) -> None:
        self._script = list(script)
        self._reject = set(reject)
        self._lock = threading.Lock()
        self.rows: list[TagValue] = []
        self.down: SinkError | None = None

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        with self._lock:
            step = self._script.pop(0) if self._script else None
            if step is not None:
                raise step
            if self.down is not None:
                raise self.down
            rejected = [RowError(i, "ROW_BAD", "refused") for i in range(len(batch)) if i in self._reject]
            kept = [v for i, v in enumerate(batch) if i not in self._reject]
            self.rows.extend(kept)
            return WriteResult(written=len(kept), rejected=rejected)

    def ping(self) -> None:
        if self.down is not None:
            raise self.down

    def close(self) -> None:
        return None


@dataclass
class RecordingListener(WriterListener):
    """Remembers every notification and lets a test wait for the n-th one."""

    attempts: list[tuple[int, bool]] = field(default_factory=list)
    saved: list[tuple[int, str]] = field(default_factory=list)
    circuits: list[CircuitStatus] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def batch_attempted(self, event: BatchAttempt) -> None:
        with self.changed:
            self.attempts.append((event.attempt, event.ok))
            self.changed.notify_all()

    def batch_saved(self, size: int, destination: Destination, reason: str) -> None:
        with self.changed:
            self.saved.append((size, destination))
            self.changed.notify_all()

    def circuit_changed(self, status: CircuitStatus) -> None:
        with self.changed:
            self.circuits.append(status)
            self.changed.notify_all()

    def wait_for(self, attempts: int = 0, saved: int = 0, timeout_s: float = 10.0) -> None:
        with self.changed:
            ok = self.changed.wait_for(
                lambda: len(self.attempts) >= attempts and len(self.saved) >= saved, timeout_s
            )
        assert ok, f"waited for {attempts} attempts / {saved} saves, saw {self.attempts} / {self.saved}"


def memory_tracer() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def values(count: int, *, start: datetime | None = None, prefix: str = "T") -> list[TagValue]:
    base = start or datetime.now(UTC)
    return [TagValue(f"{prefix}{i:04d}", float(i), base + timedelta(microseconds=i)) for i in range(count)]


def make_writer(
    tmp_path: Path,
    sink: ScriptedSink,
    listener: WriterListener,
    *,
    tracer: trace.Tracer | None = None,
    retries: int = 2,
    batch_size: int = 10,
) -> WriterRig:
    """The telemetry tests' writer: one worker, retries at once, no probe during a test."""
    return WriterRig(
        tmp_path,
        sink,
        capacity=1000,
        batch_size=batch_size,
        workers=1,
        flush_interval_s=0.05,
        retry=RetryPolicy.of(retries, [0.0]),
        probe_interval_s=60.0,
        listener=listener,
        tracer=tracer,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def writer_stats(**overrides: object) -> WriterStats:
    """A consistent WriterStats for a service that has written 10 000 values; override any field."""
    base: dict[str, object] = {
        "buffer_size": 200,
        "buffer_capacity": 10_000,
        "buffer_inserted": 10_200,
        "buffer_removed": 10_000,
        "buffer_overflow": 0,
        "buffer_high_water": 600,
        "written": 10_000,
        "duplicate": 0,
        "rejected": 0,
        "backed_up": 0,
        "lost": 0,
        "in_flight": 0,
        "retry_pending": 0,
        "spilled": 0,
        "batches_written": 20,
        "attempts_failed": 0,
        "batches_backed_up": 0,
        "retries": 0,
        "last_error": "",
        "last_success_at": 1_795_000_000.0,
        "circuit": CircuitStatus(CircuitState.CLOSED, "", False, None, 0, 0),
    }
    base.update(overrides)
    return WriterStats(**base)  # type: ignore[arg-type]


def snapshot_of(stats: WriterStats) -> Snapshot:
    spool = SpoolStats(0, 0, 0, 0, None, "backup", False)
    return Snapshot(stats, IntakeStats(0, 0, 0, 0), spool, spool, taken_at=1_795_000_100.0)
