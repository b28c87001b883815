"""The HTTP API as one WSGI application: ``/metrics`` (prometheus-client's own app), the JSON
status, the health probes and the OpenAPI document.

Only GET and HEAD exist. An unknown path answers 404 and a known path asked with another method
405 with an ``Allow`` header, both as JSON; nothing a client sends can cause a 5xx.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import make_wsgi_app

from collector.api.ingest import IngestEndpoint
from collector.api.openapi import openapi_document
from collector.api.status import ServiceInfo, build_status
from collector.inventory import Inventory
from collector.stats import Snapshot
from collector.telemetry import Telemetry, trouble_counters

log = logging.getLogger("collector.api")

ALLOWED_METHODS = ("GET", "HEAD")
JSON_TYPE = "application/json"


class Observed(Protocol):
    """What the API reads from the service."""

    def snapshot(self) -> Snapshot: ...

    def inventory(self) -> Inventory: ...

    def liveness(self) -> list[str]:
        """Why the service is not alive; empty when it is."""
        ...

    def readiness(self) -> list[str]:
        """Why the service cannot write now; empty when it can."""
        ...

    def service_info(self) -> ServiceInfo: ...


Response = tuple[str, str, bytes]
"""(status line, content type, body)."""


def _json_response(status: str, data: Any) -> Response:
    return status, JSON_TYPE, json.dumps(data, separators=(",", ":")).encode()


class ApiApp:
    """The WSGI application; thread-safe (each request reads a fresh snapshot)."""

    def __init__(
        self, observed: Observed, telemetry: Telemetry, *, ingest: IngestEndpoint | None = None
    ) -> None:
        self._observed = observed
        self._ingest = ingest
        self._telemetry = telemetry
        self._metrics: WSGIApplication = make_wsgi_app(telemetry.registry)
        self._openapi = json.dumps(openapi_document(), indent=1).encode()
        self._routes: dict[str, Callable[[], Response]] = {
            "/": self._index,
            "/api/v1/status": self._status,
            "/api/v1/openapi.json": lambda: ("200 OK", JSON_TYPE, self._openapi),
            "/healthz": lambda: self._probe(self._observed.liveness()),
            "/readyz": lambda: self._probe(self._observed.readiness()),
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if self._ingest is not None and path == self._ingest.path:
            response, extra = self._ingest.handle(environ)
            return self._send(method, response, start_response, extra)
        known = path == "/metrics" or path in self._routes
        if not known:
            response = _json_response("404 Not Found", {"error": "not found", "detail": path})
            return self._send(method, response, start_response)
        if method not in ALLOWED_METHODS:
            response = _json_response(
                "405 Method Not Allowed", {"error": "method not allowed", "detail": f"{method} {path}"}
            )
            return self._send(method, response, start_response, [("Allow", ", ".join(ALLOWED_METHODS))])
        if path == "/metrics":
            body = self._metrics(environ, start_response)
            return [] if method == "HEAD" else body
        try:
            response = self._routes[path]()
        except Exception:
            log.exception("error answering %s %s", method, path)
            response = _json_response(
                "500 Internal Server Error", {"error": "internal error", "detail": path}
            )
        return self._send(method, response, start_response)

    @staticmethod
    def _send(
        method: str,
        response: Response,
        start_response: StartResponse,
        extra: list[tuple[str, str]] | None = None,
    ) -> Iterable[bytes]:
        status, content_type, body = response
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *(extra or []),
        ]
        start_response(status, headers)
        return [] if method == "HEAD" else [body]

    def _status(self) -> Response:
        snapshot = self._observed.snapshot()
        telemetry = self._telemetry
        document = build_status(
            snapshot=snapshot,
            inventory=self._observed.inventory(),
            window=telemetry.listener.window.summary(),
            recent=telemetry.history.increase(trouble_counters(snapshot)),
            sink_ok=telemetry.listener.sink_ok,
            service=self._observed.service_info(),
        )
        return _json_response("200 OK", document)

    @staticmethod
    def _probe(problems: list[str]) -> Response:
        if problems:
            return _json_response("503 Service Unavailable", {"status": "failing", "problems": problems})
        return _json_response("200 OK", {"status": "ok", "problems": []})

    @staticmethod
    def _index() -> Response:
        return _json_response(
            "200 OK",
            {
                "endpoints": [
                    "/metrics",
                    "/api/v1/status",
                    "/healthz",
                    "/readyz",
                    "/api/v1/openapi.json",
                ]
            },
        )
