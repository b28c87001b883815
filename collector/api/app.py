"""The HTTP API as one WSGI application: the admin page, ``/metrics`` (prometheus-client's own
app), the JSON status, the health probes, the runbook and the OpenAPI document.

Only GET and HEAD exist. An unknown path answers 404 and a known path asked with another method
405 with an ``Allow`` header, both as JSON; nothing a client sends can cause a 5xx.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from collector.api.ingest import IngestEndpoint
from collector.api.openapi import openapi_document
from collector.api.page import admin_page
from collector.api.runbook import runbook_page
from collector.api.status import ServiceInfo, build_status
from collector.inventory import Inventory
from collector.stats import Snapshot
from collector.telemetry import Telemetry, trouble_counters
from collector.telemetry.exposition import make_metrics_app

log = logging.getLogger("collector.api")

ALLOWED_METHODS = ("GET", "HEAD")
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"


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


Response = tuple[str, str, bytes] | tuple[str, str, bytes, list[tuple[str, str]]]
"""(status line, content type, body[, extra headers])."""


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
        self._metrics: WSGIApplication = make_metrics_app(telemetry.registry)
        self._openapi = json.dumps(openapi_document(), indent=1).encode()
        page = admin_page()
        self._page: Response = (
            "200 OK",
            HTML_TYPE,
            page.body,
            [("Content-Security-Policy", page.content_security_policy)],
        )
        self._runbook: Response = (
            "200 OK",
            HTML_TYPE,
            runbook_page(),
            [("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")],
        )
        self._routes: dict[str, Callable[[], Response]] = {
            "/": lambda: self._page,
            "/runbook": lambda: self._runbook,
            "/api/v1/status": self._status,
            "/api/v1/openapi.json": lambda: ("200 OK", JSON_TYPE, self._openapi),
            "/healthz": lambda: self._probe(self._observed.liveness()),
            "/readyz": lambda: self._probe(self._observed.readiness()),
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if self._ingest is not None and path == self._ingest.path:
            answer, extra = self._ingest.handle(environ)
            return self._send(method, answer, start_response, extra)
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
        status, content_type, body = response[:3]
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *(response[3] if len(response) > 3 else []),
            *(extra or []),
        ]
        start_response(status, headers)
        return [] if method == "HEAD" else [body]

    def _status(self) -> Response:
        snapshot = self._observed.snapshot()
        telemetry = self._telemetry
        service = self._observed.service_info()
        horizon = telemetry.history.horizon_s
        uptime = snapshot.taken_at - service.started_at if service.started_at is not None else 0.0
        document = build_status(
            snapshot=snapshot,
            inventory=self._observed.inventory(),
            window=telemetry.listener.window.summary(),
            recent=telemetry.history.increase(trouble_counters(snapshot)),
            sink_ok=telemetry.listener.sink_ok,
            service=service,
            spill_ratio=telemetry.spill_ratio,
            disks=telemetry.disk.readings(),
            # A stalled intake is judged over a full history span only.
            history_s=horizon if uptime >= horizon else None,
        )
        return _json_response("200 OK", document)

    @staticmethod
    def _probe(problems: list[str]) -> Response:
        if problems:
            return _json_response("503 Service Unavailable", {"status": "failing", "problems": problems})
        return _json_response("200 OK", {"status": "ok", "problems": []})
