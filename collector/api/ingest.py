"""``POST /api/v1/values``: tag values over HTTP, in the same JSON shape as the MQTT source.

A request is all or nothing: 202 once every value in it has been accepted (the intake's accept
call has returned), or 400 listing every bad item with its JSON pointer and reason, and nothing of
it accepted, since the client still holds its data and can send it again corrected. Redelivery is
harmless: the table's key turns a value sent twice into a counted duplicate.

A bearer token is required when one is configured, and one must be configured for the endpoint to
be on while the API listens beyond loopback (see ``api.ingest`` in docs/configuration.md).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any
from wsgiref.types import WSGIEnvironment

from collector.buffer import BufferClosedError
from collector.sources.network import PayloadIntake
from collector.sources.payload import openapi_schemas

log = logging.getLogger("collector.api")

INGEST_PATH = "/api/v1/values"
JSON_TYPE = "application/json"
MAX_PROBLEMS_LISTED = 1000
"""A 400 answer lists at most this many problems (and says how many there were)."""
DRAIN_LIMIT_BYTES = 8 * 1024 * 1024
"""An oversized body is read and discarded up to this much, so the client sees the 413 rather than
a reset connection; beyond it the connection is closed unread."""
RETRY_AFTER_S = "5"
READ_CHUNK = 64 * 1024

Response = tuple[str, str, bytes]
Headers = list[tuple[str, str]]


def _json(status: str, data: Any, headers: Headers | None = None) -> tuple[Response, Headers]:
    return (status, JSON_TYPE, json.dumps(data, separators=(",", ":")).encode()), headers or []


def _error(status: str, error: str, detail: str, headers: Headers | None = None) -> tuple[Response, Headers]:
    return _json(status, {"error": error, "detail": detail}, headers)


class IngestEndpoint:
    """Answers ``POST /api/v1/values``; thread-safe (one request per server thread)."""

    path = INGEST_PATH

    def __init__(
        self,
        intake: PayloadIntake | None,
        *,
        token: str | None,
        max_body_bytes: int,
        refusing: Callable[[], str | None],
        disabled_reason: str = "",
    ) -> None:
        """``refusing`` says why values cannot be taken now (shutting down), or None."""
        self._intake = intake
        self._token = token.encode() if token else None
        self._max_body = max_body_bytes
        self._refusing = refusing
        self._disabled_reason = disabled_reason

    def handle(self, environ: WSGIEnvironment) -> tuple[Response, Headers]:
        try:
            return self._handle(environ)
        except Exception:
            log.exception("error answering POST %s", INGEST_PATH)
            return _error("500 Internal Server Error", "internal error", INGEST_PATH)

    def _handle(self, environ: WSGIEnvironment) -> tuple[Response, Headers]:
        refusal = self._refusal(environ)
        if refusal is not None:
            return refusal
        body, problem = self._read_body(environ)
        if problem is not None:
            return problem
        return self._take(body)

    def _refusal(self, environ: WSGIEnvironment) -> tuple[Response, Headers] | None:
        """The answer to a request refused before its body is read, in the order a client should
        learn of it (method, switched off, credentials, shutdown, media type); None to go on."""
        method = environ.get("REQUEST_METHOD", "GET")
        media = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
        if method != "POST":
            return _error(
                "405 Method Not Allowed", "method not allowed", f"{method} {INGEST_PATH}", [("Allow", "POST")]
            )
        if self._intake is None:
            return _error("403 Forbidden", "ingest disabled", self._disabled_reason)
        if self._token is not None and not self._authorized(environ):
            challenge = 'Bearer realm="collector", error="invalid_token"'
            return _error(
                "401 Unauthorized",
                "unauthorized",
                "send Authorization: Bearer <api.ingest.token>",
                [("WWW-Authenticate", challenge)],
            )
        refusing = self._refusing()
        if refusing:
            return _error(
                "503 Service Unavailable", "unavailable", refusing, [("Retry-After", RETRY_AFTER_S)]
            )
        if media != JSON_TYPE:
            return _error(
                "415 Unsupported Media Type",
                "unsupported media type",
                f"send {JSON_TYPE}, got {media or 'none'}",
            )
        return None

    def _authorized(self, environ: WSGIEnvironment) -> bool:
        assert self._token is not None
        scheme, _, credentials = (environ.get("HTTP_AUTHORIZATION") or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode(), self._token)

    def _read_body(self, environ: WSGIEnvironment) -> tuple[bytes, tuple[Response, Headers] | None]:
        raw_length = environ.get("CONTENT_LENGTH") or ""
        if not raw_length:
            return b"", _error("411 Length Required", "length required", "send a Content-Length header")
        length = int(raw_length) if raw_length.strip().isdigit() else -1
        if length < 0:  # a negative length would read the stream to its end
            return b"", _error(
                "400 Bad Request", "bad request", f"Content-Length {raw_length!r} is not a length"
            )
        stream = environ["wsgi.input"]
        if length > self._max_body:
            _drain(stream, length)
            return b"", _error(
                "413 Content Too Large",
                "body too large",
                f"{length} bytes; the limit is {self._max_body} (api.ingest.max_body_bytes):"
                " send smaller batches",
            )
        body = stream.read(length) if length else b""
        if len(body) < length:
            return b"", _error("400 Bad Request", "bad request", "the body ended before Content-Length")
        return body, None

    def _take(self, body: bytes) -> tuple[Response, Headers]:
        assert self._intake is not None
        try:
            taken = self._intake.take(body, where="http")
        except BufferClosedError:
            return _error(
                "503 Service Unavailable", "unavailable", "shutting down", [("Retry-After", RETRY_AFTER_S)]
            )
        if taken.problems:
            listed = taken.problems[:MAX_PROBLEMS_LISTED]
            return _json(
                "400 Bad Request",
                {
                    "error": "invalid values",
                    "detail": f"{len(taken.problems)} problems; nothing of this request was accepted",
                    "accepted": 0,
                    "problems": [p.as_dict() for p in listed],
                    "problems_total": len(taken.problems),
                },
            )
        return _json("202 Accepted", {"accepted": taken.accepted, "polls": taken.parsed.polls})


def _drain(stream: Any, length: int) -> None:
    left = min(length, DRAIN_LIMIT_BYTES)
    while left > 0:
        chunk = stream.read(min(READ_CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)


# --------------------------------------------------------------------------- OpenAPI


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON_TYPE: {"schema": _ref(schema)}}}


def openapi_paths() -> dict[str, Any]:
    """The path item for the OpenAPI document."""
    return {
        INGEST_PATH: {
            "post": {
                "summary": "Send tag values (one poll or a batch), the same JSON as over MQTT",
                "description": "All or nothing: 202 once every value is accepted, 400 with the reason per bad"
                " item and nothing accepted. A bearer token is required when api.ingest.token is set"
                " (and it must be set for the API to take values beyond loopback). See docs/intake.md.",
                "operationId": "postValues",
                "security": [{"bearerToken": []}, {}],
                "requestBody": {"required": True, "content": {JSON_TYPE: {"schema": _ref("TagValues")}}},
                "responses": {
                    "202": _answer("Every value was accepted.", "TagValuesAccepted"),
                    "400": _answer("Some items are invalid; nothing was accepted.", "TagValuesRefused"),
                    "401": _answer("Missing or wrong bearer token.", "Error"),
                    "403": _answer("Ingest is disabled in this service's configuration.", "Error"),
                    "411": _answer("No Content-Length.", "Error"),
                    "413": _answer("The body exceeds api.ingest.max_body_bytes.", "Error"),
                    "415": _answer("The body is not application/json.", "Error"),
                    "503": _answer("Shutting down: send again later (Retry-After).", "Error"),
                },
            }
        }
    }


def openapi_components() -> dict[str, Any]:
    """Schemas and the security scheme the path refers to."""
    count = {"type": "integer", "minimum": 0}
    problem = {
        "type": "object",
        "required": ["pointer", "reason", "values"],
        "additionalProperties": False,
        "properties": {
            "pointer": {
                "type": "string",
                "description": "JSON pointer to the item; empty for the whole body.",
            },
            "reason": {"type": "string"},
            "values": {**count, "description": "Readings this problem refuses."},
        },
    }
    return {
        "schemas": {
            **openapi_schemas("TagValues"),
            "TagValuesAccepted": {
                "type": "object",
                "required": ["accepted", "polls"],
                "additionalProperties": False,
                "properties": {"accepted": count, "polls": count},
            },
            "TagValuesProblem": problem,
            "TagValuesRefused": {
                "type": "object",
                "required": ["error", "detail", "accepted", "problems", "problems_total"],
                "additionalProperties": False,
                "properties": {
                    "error": {"type": "string"},
                    "detail": {"type": "string"},
                    "accepted": {**count, "maximum": 0},
                    "problems": {"type": "array", "items": _ref("TagValuesProblem")},
                    "problems_total": count,
                },
            },
        },
        "securitySchemes": {"bearerToken": {"type": "http", "scheme": "bearer"}},
    }
