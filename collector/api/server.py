"""The HTTP server: a threading WSGI server from the standard library, run on its own thread.

A scrape or a status request is a few milliseconds of work, so one thread per request is plenty
and a slow client never holds up another.
"""

from __future__ import annotations

import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import WSGIApplication

from collector.logs import log_event

log = logging.getLogger("collector.api")


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response is not the server's problem; keep it out of stderr.
        log.debug("error serving %s", client_address, exc_info=True)


class _ThreadingWSGIServerV6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - " + format, self.address_string(), *args)


class ApiServer:
    """Serves ``app`` on ``host:port`` (port 0 picks a free one) while started.

    If the port cannot be bound the collector keeps collecting: data comes first (monitoring is the
    specification's lowest priority), the failure is logged as critical, and Prometheus's
    ``up == 0`` raises the CollectorDown alert.
    """

    def __init__(self, app: WSGIApplication, host: str = "127.0.0.1", port: int = 9108) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._server: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def port(self) -> int | None:
        """The bound port, or None while not serving."""
        return self._server.server_address[1] if self._server is not None else None

    @property
    def url(self) -> str | None:
        port = self.port
        if port is None:
            return None
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{port}"

    def start(self) -> None:
        server_class = _ThreadingWSGIServerV6 if ":" in self._host else _ThreadingWSGIServer
        try:
            server = make_server(
                self._host, self._port, self._app, server_class=server_class, handler_class=_QuietHandler
            )
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
        assert isinstance(server, _ThreadingWSGIServer)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="api-server", daemon=True
        )
        self._thread.start()
        log_event(log, logging.INFO, "api_listening", url=self.url, metrics=f"{self.url}/metrics")

    def stop(self) -> None:
        """Stop serving and close the socket. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
