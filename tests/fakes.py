"""Fakes for the writer's tests: sinks that behave like databases in the ways that matter.

They wrap a real sink (usually SQLite) or keep rows in memory with a primary key, so tests can count
what really got stored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from collector.model import TagValue
from collector.sinks.base import (
    PermanentSinkError,
    RowError,
    Sink,
    SinkError,
    TransientSinkError,
    WriteResult,
)

Key = tuple[str, datetime]


class MemorySink:
    """Stores rows in a dict keyed like the real table's primary key; thread-safe."""

    system_name = "memory"
    table = "TAG_DATA"

    def __init__(self, reject: Callable[[TagValue], str | None] | None = None) -> None:
        self.rows: dict[Key, TagValue] = {}
        self.batches: list[int] = []
        self._reject = reject
        self._lock = threading.Lock()
        self.closed = False

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        result = WriteResult()
        with self._lock:
            self.batches.append(len(batch))
            for index, value in enumerate(batch):
                reason = self._reject(value) if self._reject else None
                if reason:
                    result.rejected.append(RowError(index, "CHECK", reason))
                    continue
                key = (value.tag_name, value.timestamp)
                if key in self.rows:
                    result.duplicates += 1
                else:
                    self.rows[key] = value
                    result.written += 1
        return result

    def ping(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def keys(self) -> set[Key]:
        with self._lock:
            return set(self.rows)


class WrappedSink:
    """A real sink behind a test's own ``write``: it passes the sink's name, table, ``ping`` and
    ``close`` through, so a subclass only says what it does to writes."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.system_name = inner.system_name
        self.table = inner.table

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        return self.inner.write(batch)

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


class SwitchableSink:
    """Wraps a sink; while ``down`` is set every call fails like a database that went away."""

    def __init__(self, inner: Sink, *, error: SinkError | None = None) -> None:
        self.inner = inner
        self.system_name = inner.system_name
        self.table = inner.table
        self.down = threading.Event()
        self.error = error or TransientSinkError("connection refused", code="ECONNREFUSED")
        self.calls = 0
        self.failures = 0
        self.pings = 0
        self._lock = threading.Lock()

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        with self._lock:
            self.calls += 1
            if self.down.is_set():
                self.failures += 1
                raise self.error
        return self.inner.write(batch)

    def ping(self) -> None:
        with self._lock:
            self.pings += 1
        if self.down.is_set():
            raise self.error
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


class LostAckSink(WrappedSink):
    """Commits the batch, then reports a connection error, for the first ``times`` batches: the
    acknowledgement of a successful commit is lost on the way back."""

    def __init__(self, inner: Sink, times: int = 1) -> None:
        super().__init__(inner)
        self._remaining = times
        self._lock = threading.Lock()

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        result = self.inner.write(batch)
        with self._lock:
            if self._remaining > 0:
                self._remaining -= 1
                raise TransientSinkError("connection reset after commit", code="ECONNRESET")
        return result


class BlockingSink:
    """Blocks every write until ``release`` is set, like a database that accepts and never answers."""

    system_name = "blocking"
    table = "TAG_DATA"

    def __init__(self, inner: Sink | None = None) -> None:
        self.inner = inner or MemorySink()
        self.release = threading.Event()
        self.entered = threading.Event()

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        self.entered.set()
        self.release.wait()
        return self.inner.write(batch)

    def ping(self) -> None:
        return None

    def close(self) -> None:
        self.release.set()


class PermanentlyBrokenSink(MemorySink):
    """A sink whose table has gone: every write and probe fails permanently until ``fixed``."""

    def __init__(self) -> None:
        super().__init__()
        self.fixed = threading.Event()

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        if not self.fixed.is_set():
            raise PermanentSinkError("table TAG_DATA does not exist", code="NO_TABLE")
        return super().write(batch)

    def ping(self) -> None:
        if not self.fixed.is_set():
            raise PermanentSinkError("table TAG_DATA does not exist", code="NO_TABLE")


class ManualClock:
    """A monotonic clock the test moves by hand; with ``step`` it also ticks on every reading, so
    a wait measured against it ends without real time passing."""

    def __init__(self, start: float = 1000.0, step: float = 0.0) -> None:
        self._now = start
        self._step = step
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self._now += self._step
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
