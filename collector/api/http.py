"""HTTP/1.1 on the wire, as pure functions: parse a request head, build a WSGI environ, format a
response. The server (:mod:`collector.api.server`) owns the sockets; everything here is tested
without one.

Only what the API needs is accepted: a request line and headers of at most ``MAX_HEAD_BYTES``, a
body announced by ``Content-Length`` (chunked uploads are refused with 411), HTTP/1.0 and 1.1.
"""

from __future__ import annotations

import io
import ipaddress
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

MAX_HEAD_BYTES = 16 * 1024
"""Request line and headers together; a larger head is refused with 431."""
SERVER_HEADER = "plc-tag-collector"
"""The ``Server`` header: the product only, never the interpreter or library versions."""

REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


class HttpError(Exception):
    """A request the server answers itself, with ``status`` and a short reason, then closes."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(slots=True)
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)
    """Header names in lower case; repeated headers joined with ", "."""
    body: bytes = b""

    @property
    def content_length(self) -> int:
        raw = self.headers.get("content-length")
        if raw is None:
            return 0
        if not raw.isdigit():
            raise HttpError(400, "invalid Content-Length")
        return int(raw)

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    @property
    def expects_continue(self) -> bool:
        return self.headers.get("expect", "").lower() == "100-continue"


def parse_head(head: bytes, max_body_bytes: int) -> Request:
    """Parse a request line and headers (without the blank line that ends them)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # latin-1 decodes every byte; kept for clarity
        raise HttpError(400, "undecodable request") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, f"unsupported version {version[:16]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or " " in name:
            raise HttpError(400, "malformed header")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    request = Request(method.upper(), target, version, headers)
    if "transfer-encoding" in headers:
        raise HttpError(411, "send the body with Content-Length")
    if request.content_length > max_body_bytes:
        raise HttpError(413, f"body larger than {max_body_bytes} bytes")
    return request


def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a ``Host`` header names this server, for a server bound to loopback.

    A page on some web site can make a browser on the collector's machine send requests to
    127.0.0.1 under the site's own name (DNS rebinding); the browser then sends that name as the
    Host. Loopback addresses, ``localhost`` and the configured names are accepted; a request
    without a Host header (HTTP/1.0 tools) is not a browser's and is accepted too.
    """
    if host_header is None:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    if host in allowed or host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_bind(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def wsgi_environ(request: Request, server: tuple[str, int], client: tuple[str, int] | None) -> dict[str, Any]:
    """The PEP 3333 environ of a request."""
    path, _, query = request.target.partition("?")
    if path.startswith(("http://", "https://")):  # absolute form: keep the path only
        path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": request.version,
        "REMOTE_ADDR": client[0] if client else "",
        "REMOTE_PORT": str(client[1]) if client else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers.items():
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name == "content-length":
            environ["CONTENT_LENGTH"] = value
        else:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def format_response(
    status: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    keep_alive: bool,
    head_only: bool = False,
) -> bytes:
    """The bytes of a response: status line, headers (with Content-Length, Connection and Server
    set here), blank line, body (none for HEAD)."""
    lines = [f"HTTP/1.1 {status}"]
    length_given = False
    for name, value in headers:
        lowered = name.lower()
        if lowered in ("connection", "server", "date", "transfer-encoding"):
            continue
        if lowered == "content-length":
            length_given = True
        lines.append(f"{name}: {value}")
    if not length_given:
        lines.append(f"Content-Length: {len(body)}")
    lines.append(f"Server: {SERVER_HEADER}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def error_response(
    status: int, detail: str, *, keep_alive: bool = False, extra: Mapping[str, str] | None = None
) -> bytes:
    """A JSON error answered by the server itself (the same shape as the application's errors)."""
    reason = REASONS.get(status, "Error")
    body = json.dumps({"error": reason.lower(), "detail": detail}, separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"), *(extra or {}).items()]
    return format_response(f"{status} {reason}", headers, body, keep_alive=keep_alive)
