"""The API server's own behaviour, with a small WSGI application: parsing, the Host check, keep-alive,
bodies, deadlines for idle and slow clients, the connection cap, and probes that a slow request
cannot hold up."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from collector.api.http import HttpError, host_allowed, parse_head
from collector.api.server import ApiServer, ServerLimits


def _app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/slow":
        time.sleep(1.0)
    body = environ["wsgi.input"].read()
    answer = f"{environ['REQUEST_METHOD']} {path} {len(body)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))])
    return [answer]


@pytest.fixture
def server() -> Iterator[ApiServer]:
    limits = ServerLimits(max_connections=8, workers=2, request_timeout_s=0.5, idle_timeout_s=0.5)
    running = ApiServer(_app, "127.0.0.1", 0, limits=limits, inline_paths=frozenset({"/healthz"}))
    running.start()
    try:
        yield running
    finally:
        running.stop()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("api-")]


def _request(
    server: ApiServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, dict[str, str]]:
    assert server.port is not None
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode(), dict(response.getheaders())
    finally:
        conn.close()


def _connect(server: ApiServer) -> socket.socket:
    assert server.port is not None
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x", None),
        (b"GET /\r\nHost: x", 400),
        (b"GET / HTTP/2.0\r\nHost: x", 505),
        (b"GET / HTTP/1.1\r\nBad Header: x", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked", 411),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999", 413),
        (b"POST / HTTP/1.1\r\nContent-Length: -1", 400),
    ],
)
def test_request_heads_are_parsed_or_refused_with_the_right_status(head: bytes, status: int | None) -> None:
    if status is None:
        assert parse_head(head, 1000).headers == {"host": "x"}
        return
    with pytest.raises(HttpError) as refused:
        request = parse_head(head, 1000)
        request.content_length  # noqa: B018 - validated on read
    assert refused.value.status == status


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (None, True),
        ("127.0.0.1:9108", True),
        ("localhost:9108", True),
        ("[::1]:9108", True),
        ("127.8.9.10", True),
        ("collector.plant.lan:9108", True),
        ("evil.example:9108", False),
        ("127.0.0.1.evil.example", False),
        ("", False),
    ],
)
def test_the_host_check_accepts_loopback_names_only(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, frozenset({"collector.plant.lan"})) is allowed


def test_answers_without_naming_the_interpreter_and_refuses_foreign_hosts(server: ApiServer) -> None:
    status, body, headers = _request(server, "/x")
    assert (status, body) == (200, "GET /x 0")
    assert headers["Server"] == "plc-tag-collector"
    assert "python" not in str(headers).lower()
    status, body, _ = _request(server, "/x", {"Host": "rebound.example.com"})
    assert status == 421 and "loopback" in body


def test_keep_alive_pipelining_and_bodies_with_100_continue(server: ApiServer) -> None:
    sock = _connect(server)
    with sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\nGET /b HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = b""
        while received.count(b"GET /") < 2:
            received += sock.recv(4096)
        assert b"GET /a 0" in received and b"GET /b 0" in received
        sock.sendall(
            b"POST /c HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"hello")
        answer = b""
        while b"POST /c 5" not in answer:
            answer += sock.recv(4096)


def test_idle_and_slow_clients_are_disconnected_at_their_deadline(server: ApiServer) -> None:
    idle = _connect(server)
    slow = _connect(server)
    with idle, slow:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: loc")  # and never the rest
        assert _closed_by_server(idle, 3.0)
        assert _closed_by_server(slow, 3.0)
    assert server.timed_out >= 2
    kept = _connect(server)
    with kept:  # after an answer, a kept-alive connection may idle for idle_timeout_s
        kept.sendall(b"GET /k HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert b"GET /k 0" in kept.recv(4096)
        assert _closed_by_server(kept, 3.0)


def test_a_full_house_of_idle_clients_never_locks_out_a_new_one(server: ApiServer) -> None:
    hoggers = [_connect(server) for _ in range(3 * server.max_connections)]
    try:
        for _ in range(5):
            status, body, _ = _request(server, "/healthz")
            assert (status, body) == (200, "GET /healthz 0")
        assert server.evicted > 0
    finally:
        for sock in hoggers:
            sock.close()


def test_a_slow_request_does_not_hold_up_the_probes(server: ApiServer) -> None:
    slow = threading.Thread(target=_request, args=(server, "/slow"))
    slow.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert _request(server, "/healthz")[0] == 200
    assert time.monotonic() - started < 0.5
    slow.join()


def test_a_head_too_large_is_refused(server: ApiServer) -> None:
    sock = _connect(server)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 431 ")


def test_thousands_of_pipelined_requests_are_answered_in_order(server: ApiServer) -> None:
    sock = _connect(server)
    with sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n" * 2000)
        received = b""
        while received.count(b"GET /healthz 0") < 2000:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == 2000
