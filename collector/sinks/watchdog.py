"""Deadlines for blocking database calls that the driver cannot time out by itself.

Once psycopg has sent a query it waits on its socket with no limit. A server, firewall or proxy
that accepts the connection and then never answers would hold a writer thread forever, and the
server's own ``statement_timeout`` cannot help when the server never sees the statement. A
:class:`Watchdog` keeps one thread that runs the abort action of any guarded call that overruns
its deadline (for a socket: shut it down, which wakes the blocked call with a connection error).

Aborts run under the watchdog's lock and a guard is disarmed under the same lock, so an abort never
fires after its guard has exited: a connection that went back to the pool cannot be cut while
another writer uses it. Abort actions must therefore be quick and must not block.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("collector.sinks.watchdog")


class Guard:
    """One armed deadline. ``fired`` tells the caller that its call was aborted."""

    __slots__ = ("abort", "active", "deadline", "fired")

    def __init__(self, deadline: float, abort: Callable[[], None]) -> None:
        self.deadline = deadline
        self.abort = abort
        self.active = True
        self.fired = False


class Watchdog:
    """Runs the abort action of every guarded call still running at its deadline."""

    def __init__(self, name: str = "watchdog", *, clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, Guard]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextmanager
    def guard(self, timeout_s: float, abort: Callable[[], None]) -> Iterator[Guard]:
        """Run the body with ``abort`` armed to fire ``timeout_s`` from now."""
        armed = self.arm(timeout_s, abort)
        try:
            yield armed
        finally:
            self.disarm(armed)

    def arm(self, timeout_s: float, abort: Callable[[], None]) -> Guard:
        armed = Guard(self._clock() + timeout_s, abort)
        with self._lock:
            if self._closed:
                raise RuntimeError("watchdog is closed")
            heapq.heappush(self._heap, (armed.deadline, next(self._seq), armed))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is armed:
                self._wake.notify()
        return armed

    def disarm(self, armed: Guard) -> None:
        # The heap entry stays until its deadline comes up and is then skipped: cheaper than a
        # removal, and the heap holds at most one entry per call made in the last timeout.
        with self._lock:
            armed.active = False

    def expire(self, now: float) -> float | None:
        """Fire every active guard whose deadline is past; return the seconds until the next
        deadline, or None when nothing is armed. The thread calls this; tests may too."""
        with self._lock:
            return self._expire_locked(now)

    def _expire_locked(self, now: float) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, armed = heap[0]
            if armed.active and deadline > now:
                return deadline - now
            heapq.heappop(heap)
            if not armed.active:
                continue
            armed.active = False
            armed.fired = True
            try:
                armed.abort()
            except Exception:
                log.exception("watchdog abort action failed")
        return None

    def _run(self) -> None:
        with self._lock:
            while not self._closed:
                wait = self._expire_locked(self._clock())
                self._wake.wait(wait)

    def close(self) -> None:
        """Stop the thread; guards still armed never fire. Safe to call twice."""
        with self._lock:
            self._closed = True
            self._heap.clear()
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
