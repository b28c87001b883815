"""The HTTP server: one event-loop thread for every socket, a small pool of threads for the work.

The API must stay answerable, and must never take from the pipeline what it needs, whatever the
clients do. A thread per connection (the standard library's servers) lets idle or slow clients
hold threads and file descriptors without limit; with the database down those descriptors are the
ones the backup files need. So:

- one thread (``api-io``) owns the listening socket and every connection, non-blocking, with a
  deadline each: a request must arrive whole within ``request_timeout_s`` of its first byte (or of
  the connection), a kept-alive connection may idle ``idle_timeout_s``, a response must be taken
  by the client within ``write_timeout_s``. A client that misses its deadline is disconnected;
- connections are capped (``max_connections``, lowered to fit the open-file limit). At the cap a
  new connection is accepted all the same and the connection that has waited longest without a
  request being served is closed: hundreds of idle or slow clients cannot lock out a probe;
- the reads that take a millisecond or two (the probes, ``/metrics``, the status, the page) are
  answered on the event-loop thread itself, which saves the hand-over between threads, the larger
  part of their latency on a busy interpreter (see docs/benchmarks.md); anything else (a request
  with a body, such as an ingest POST) is computed by ``workers`` threads, so it never holds up
  the loop;
- a listen backlog of ``backlog``; a full file table when accepting pauses accepting briefly
  instead of spinning.

If the port cannot be bound the collector keeps collecting: data comes first (monitoring is the
specification's lowest priority), the failure is logged as critical, and Prometheus's ``up == 0``
raises the CollectorDown alert.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.types import WSGIApplication

from collector.api.http import (
    MAX_HEAD_BYTES,
    HttpError,
    Request,
    error_response,
    format_response,
    host_allowed,
    is_loopback_bind,
    parse_head,
    wsgi_environ,
)
from collector.limits import open_file_limit, open_files
from collector.logs import RateLimiter, log_event

log = logging.getLogger("collector.api")

INLINE_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/v1/status", "/", "/runbook"})
"""Answered on the event-loop thread: reads of memory that take at most a millisecond or two. Each
hand-over between threads costs a wait for the interpreter lock, which dominates these requests'
latency on a busy process (docs/benchmarks.md); everything else (request bodies, unknown paths)
goes to the workers."""
FD_RESERVE = 32
"""File descriptors kept for the pipeline (database, backup and rejected files, log segments)
when the connection cap is fitted to the open-file limit."""
ACCEPT_PAUSE_S = 0.1
STOP_GRACE_S = 10.0
READ_CHUNK = 64 * 1024


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    address: tuple[str, int] | None
    since: float
    """When the current wait began (accept, first byte of a request, end of a response)."""
    deadline: float
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    request: Request | None = None
    """A head parsed, its body still arriving."""
    busy: bool = False
    """A worker is computing its response: never evicted, never read from meanwhile."""
    events: int = 0
    """What the selector watches the socket for (0: not registered)."""
    close_after: bool = False
    started_request: bool = False


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The bounds of the server; the defaults suit a monitoring port on a plant network."""

    max_connections: int = 64
    workers: int = 2
    backlog: int = 128
    request_timeout_s: float = 10.0
    idle_timeout_s: float = 15.0
    """Longer than Prometheus's scrape interval, so a scraper's kept-alive connection is reused."""
    write_timeout_s: float = 10.0
    max_body_bytes: int = 8 * 1024 * 1024


class ApiServer:
    """Serves ``app`` on ``host:port`` (port 0 picks a free one) while started."""

    def __init__(
        self,
        app: WSGIApplication,
        host: str = "127.0.0.1",
        port: int = 9108,
        *,
        limits: ServerLimits | None = None,
        allowed_hosts: Iterable[str] = (),
        inline_paths: frozenset[str] = INLINE_PATHS,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._limits = limits or ServerLimits()
        self._allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self._check_host = is_loopback_bind(host)
        self._inline = inline_paths
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._jobs: queue.Queue[tuple[_Connection, Request] | None] = queue.Queue()
        self._done: deque[tuple[_Connection, bytes, bool]] = deque()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stop = threading.Event()
        self._connections: dict[int, _Connection] = {}
        self._readable: set[_Connection] = set()
        """Connections with unparsed input left after an answer (pipelining)."""
        self._accept_paused_until = 0.0
        self._accept_log = RateLimiter(60.0)
        self.max_connections = self._limits.max_connections
        self.error: str | None = None
        self.evicted = 0
        self.timed_out = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int | None:
        """The bound port, or None while not serving."""
        listener = self._listener
        return listener.getsockname()[1] if listener is not None else None

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    @property
    def url(self) -> str | None:
        port = self.port
        if port is None:
            return None
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{port}"

    def start(self) -> None:
        try:
            listener = self._listen()
        except OSError as exc:
            self.error = exc.strerror or str(exc)
            log_event(
                log,
                logging.CRITICAL,
                "api_unavailable",
                "cannot listen for /metrics and the API; collecting continues without them",
                host=self._host,
                port=self._port,
                error=self.error,
                key="api.port",
            )
            return
        self._listener = listener
        self.max_connections = self._fit_connections()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        for index in range(self._limits.workers):
            worker = threading.Thread(target=self._work, name=f"api-worker-{index + 1}", daemon=True)
            self._workers.append(worker)
            worker.start()
        self._thread = threading.Thread(target=self._loop, name="api-io", daemon=True)
        self._thread.start()
        log_event(
            log,
            logging.INFO,
            "api_listening",
            url=self.url,
            metrics=f"{self.url}/metrics",
            max_connections=self.max_connections,
            host_check=self._check_host,
        )

    def _listen(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
            listener.listen(min(self._limits.backlog, socket.SOMAXCONN))
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        return listener

    def _fit_connections(self) -> int:
        """The connection cap, lowered so that connections can never take the descriptors the
        pipeline needs: what the open-file limit leaves after those in use and a reserve."""
        limit = open_file_limit()
        if limit is None:
            return self._limits.max_connections
        spare = limit - open_files() - FD_RESERVE
        fitted = max(4, min(self._limits.max_connections, spare))
        if fitted < self._limits.max_connections:
            log_event(
                log,
                logging.WARNING,
                "api_connections_limited",
                "the open-file limit leaves room for fewer API connections",
                max_connections=fitted,
                configured=self._limits.max_connections,
                open_file_limit=limit,
            )
        return fitted

    def stop(self) -> None:
        """Stop serving, close every socket, join the threads. Safe to call twice."""
        if self._listener is None or self._stop.is_set():
            return
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join()
        for _ in self._workers:
            self._jobs.put(None)
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in self._workers:
            # A worker inside a slow request (an ingest waiting on a full buffer) gets a grace
            # period; its answer has nowhere to go now, and it is a daemon thread.
            worker.join(max(0.0, deadline - time.monotonic()))
        self._listener = None

    # ------------------------------------------------------------------ the event loop

    def _wake(self) -> None:
        if self._wake_w is not None:
            # A full buffer means the loop is being woken anyway.
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def _loop(self) -> None:
        selector = self._selector
        assert selector is not None and self._listener is not None
        try:
            while not self._stop.is_set():
                try:
                    self._turn(selector)
                except Exception:  # the loop never dies: log and carry on
                    log.exception("api server loop error")
                    time.sleep(0.05)
        finally:
            for conn in list(self._connections.values()):
                self._close(conn)
            for sock in (self._listener, self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            selector.close()

    def _turn(self, selector: selectors.BaseSelector) -> None:
        now = time.monotonic()
        timeout = self._next_deadline(now)
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            assert self._listener is not None
            selector.register(self._listener, selectors.EVENT_READ, None)
        for key, events in selector.select(timeout):
            sock = key.fileobj
            if sock is self._listener:
                self._accept()
            elif sock is self._wake_r:
                self._drain_wake()
            else:
                conn = key.data
                if conn.sock.fileno() == -1:
                    continue
                if events & selectors.EVENT_WRITE:
                    self._send(conn)
                if events & selectors.EVENT_READ and conn.sock.fileno() != -1:
                    self._receive(conn)
        self._finish_done()
        while self._readable:
            conn = self._readable.pop()
            if conn.sock.fileno() != -1:
                self._process_input(conn)
        self._expire(time.monotonic())

    def _next_deadline(self, now: float) -> float | None:
        deadlines = [c.deadline for c in self._connections.values() if not c.busy]
        if self._accept_paused_until:
            deadlines.append(self._accept_paused_until)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        # Into free places, everything waiting (a bounded number per turn). At the cap, one per
        # turn: each evicts the longest-waiting connection, and a newcomer's request must be read
        # (in this same turn) before later newcomers can make it the longest-waiting one.
        free = self.max_connections - len(self._connections)
        for _ in range(max(1, min(free, 64))):
            try:
                sock, address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: free one if a client only waits, and stop accepting for
                    # a moment rather than spin on a listener that stays readable.
                    self._evict_one()
                    self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_S
                    self._selector.unregister(self._listener)
                    if self._accept_log.ready():
                        log_event(
                            log,
                            logging.WARNING,
                            "api_accept_failed",
                            "no file descriptor for a new API connection; accepting paused",
                            error=exc.strerror,
                        )
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            if len(self._connections) >= self.max_connections and not self._evict_one():
                sock.close()  # every connection is being served: this one waits its turn elsewhere
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            now = time.monotonic()
            conn = _Connection(sock, address, now, now + self._limits.request_timeout_s)
            self._connections[sock.fileno()] = conn
            self._watch(conn, selectors.EVENT_READ)
            self._receive(conn)  # a client's request usually arrives with its connection

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest without being served; False if every
        connection is being served."""
        waiting = [c for c in self._connections.values() if not c.busy and not c.outbuf]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.since)
        self._close(oldest)
        self.evicted += 1
        return True

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _receive(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if not conn.started_request:
            # The request's time starts with its first byte; an idle connection had its own.
            conn.started_request = True
            conn.since = time.monotonic()
            conn.deadline = conn.since + self._limits.request_timeout_s
        conn.inbuf += data
        self._process_input(conn)

    def _process_input(self, conn: _Connection) -> None:
        """Parse what has arrived; dispatch a complete request."""
        while not conn.busy and not conn.outbuf and conn.sock.fileno() != -1:
            if conn.request is None:
                end = conn.inbuf.find(b"\r\n\r\n")
                if end < 0:
                    if len(conn.inbuf) > MAX_HEAD_BYTES:
                        self._refuse(conn, 431, "request head too large")
                    return
                if end > MAX_HEAD_BYTES:
                    self._refuse(conn, 431, "request head too large")
                    return
                head = bytes(conn.inbuf[:end])
                del conn.inbuf[: end + 4]
                try:
                    conn.request = parse_head(head, self._limits.max_body_bytes)
                except HttpError as exc:
                    self._refuse(conn, exc.status, exc.detail)
                    return
                if conn.request.expects_continue and len(conn.inbuf) < conn.request.content_length:
                    self._queue_output(conn, b"HTTP/1.1 100 Continue\r\n\r\n", keep_open=True)
            request = conn.request
            needed = request.content_length
            if len(conn.inbuf) < needed:
                return
            request.body = bytes(conn.inbuf[:needed])
            del conn.inbuf[:needed]
            conn.request = None
            self._dispatch(conn, request)

    def _dispatch(self, conn: _Connection, request: Request) -> None:
        if self._check_host and not host_allowed(request.headers.get("host"), self._allowed_hosts):
            self._refuse(conn, 421, "this server answers to its loopback address only")
            return
        path = request.target.partition("?")[0]
        if path in self._inline:
            self._respond(conn, self._call(conn, request), request.keep_alive)
            return
        conn.busy = True
        self._watch(conn, 0)  # nothing to read or write until the worker has answered
        self._jobs.put((conn, request))

    def _refuse(self, conn: _Connection, status: int, detail: str) -> None:
        conn.inbuf.clear()
        self._respond(conn, error_response(status, detail), keep_alive=False)

    def _respond(self, conn: _Connection, payload: bytes, keep_alive: bool) -> None:
        self._queue_output(conn, payload, keep_open=keep_alive)

    def _queue_output(self, conn: _Connection, payload: bytes, *, keep_open: bool) -> None:
        conn.outbuf += payload
        conn.close_after = conn.close_after or not keep_open
        conn.since = time.monotonic()
        conn.deadline = conn.since + self._limits.write_timeout_s
        self._send(conn)

    def _watch(self, conn: _Connection, events: int) -> None:
        """Watch a connection for ``events`` (0: not at all)."""
        assert self._selector is not None
        if events == conn.events:
            return
        if conn.events and events:
            self._selector.modify(conn.sock, events, conn)
        elif events:
            self._selector.register(conn.sock, events, conn)
        else:
            self._selector.unregister(conn.sock)
        conn.events = events

    def _send(self, conn: _Connection) -> None:
        if conn.busy:
            return
        try:
            sent = conn.sock.send(conn.outbuf) if conn.outbuf else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(conn)
            return
        del conn.outbuf[:sent]
        if conn.outbuf:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        if conn.close_after:
            self._close(conn)
            return
        # Ready for the next request on this connection.
        self._watch(conn, selectors.EVENT_READ)
        if conn.request is None and not conn.inbuf:
            conn.started_request = False
            conn.since = time.monotonic()
            conn.deadline = conn.since + self._limits.idle_timeout_s
        else:
            # Pipelined bytes, or a body after 100 Continue: parsed at the end of this turn, in a
            # loop (never by recursion, which a client sending thousands of requests would exhaust).
            self._readable.add(conn)

    def _finish_done(self) -> None:
        while self._done:
            conn, payload, keep_alive = self._done.popleft()
            conn.busy = False
            if conn.sock.fileno() == -1:
                continue
            self._respond(conn, payload, keep_alive)

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._connections.values() if not c.busy and c.deadline <= now]:
            self.timed_out += 1
            self._close(conn)

    def _close(self, conn: _Connection) -> None:
        fileno = conn.sock.fileno()
        if fileno == -1:
            return
        self._connections.pop(fileno, None)
        if conn.events:
            self._watch(conn, 0)
        conn.sock.close()

    # ------------------------------------------------------------------ the workers

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            conn, request = job
            try:
                payload = self._call(conn, request)
            except Exception:
                log.exception("api worker error")
                payload = error_response(500, "internal error")
            self._done.append((conn, payload, request.keep_alive))
            self._wake()

    def _call(self, conn: _Connection, request: Request) -> bytes:
        """Run the WSGI application for one request; returns the response's bytes."""
        assert self._listener is not None
        started: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            started[:] = [status, headers]
            return lambda _data: None

        environ = wsgi_environ(request, self._listener.getsockname()[:2], conn.address)
        try:
            result = self._app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:
            log.exception("error answering %s %s", request.method, request.target[:200])
            return error_response(500, "internal error", keep_alive=request.keep_alive)
        status, headers = started
        return format_response(
            status, headers, body, keep_alive=request.keep_alive, head_only=request.method == "HEAD"
        )
