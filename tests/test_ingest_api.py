"""``POST /api/v1/values`` against a running service: accepted, refused with reasons, guarded by a
token, bounded in size, closed while shutting down."""

from __future__ import annotations

import http.client
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.api.ingest import IngestEndpoint
from collector.buffer import TagBuffer
from collector.config import load_config
from collector.service import CollectorService
from collector.sources.counters import SourceCounters
from collector.sources.intake import Intake
from collector.sources.network import PayloadIntake
from tests.waiting import wait_until

TOKEN = "t0ken-for-tests"


def _config(tmp: Path, **extra: str) -> Any:
    return load_config(
        None,
        environ={
            "COLLECTOR_SOURCE__TYPE": "external",
            "COLLECTOR_SINK__TYPE": "sqlite",
            "COLLECTOR_SINK__PATH": str(tmp / "tags.db"),
            "COLLECTOR_BACKUP__DIR": str(tmp / "backup"),
            "COLLECTOR_WRITER__FLUSH_INTERVAL_S": "0.1",
            "COLLECTOR_API__PORT": "0",
            **extra,
        },
        env_file=None,
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorService]:
    tmp = tmp_path_factory.mktemp("ingest")
    running = CollectorService(
        _config(tmp, COLLECTOR_API__INGEST__TOKEN=TOKEN, COLLECTOR_API__INGEST__MAX_BODY_BYTES="65536")
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def post(
    service: CollectorService,
    body: bytes | Any,
    *,
    token: str | None = TOKEN,
    content_type: str = "application/json",
    method: str = "POST",
) -> tuple[int, dict[str, str], Any]:
    assert service.api is not None and service.api.port is not None
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", service.api.port, timeout=10)
    try:
        conn.request(method, "/api/v1/values", body=data if method == "POST" else None, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            json.loads(raw) if raw else None,
        )
    finally:
        conn.close()


def poll(stamp: str, *tags: str, **fields: Any) -> dict[str, Any]:
    return {
        "group": "line1",
        "timestamp": stamp,
        "values": [{"tag": t, "value": 1.5} for t in tags],
        **fields,
    }


def _stored(service: CollectorService) -> set[str]:
    path = Path(str(service.config.sink.path))  # type: ignore[union-attr]
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT tag_name FROM TAG_DATA")}


def test_accepted_values_are_answered_202_and_stored(service: CollectorService) -> None:
    status, _, body = post(
        service, {"polls": [poll("2026-11-30T10:00:00Z", "H1", "H2"), poll("2026-11-30T10:00:01Z", "H3")]}
    )
    assert (status, body) == (202, {"accepted": 3, "polls": 2})
    wait_until(lambda: {"H1", "H2", "H3"} <= _stored(service))
    http_stats = next(s for s in service.snapshot().sources if s.kind == "http")
    assert http_stats.values >= 3


def test_a_bad_item_is_answered_400_with_every_reason_and_nothing_is_accepted(
    service: CollectorService,
) -> None:
    before = service.snapshot().accepted
    document = {
        "polls": [
            poll("2026-11-30T10:00:02Z", "B1"),
            poll("2026-11-30 10:00:02", "B2"),
            {**poll("2026-11-30T10:00:02Z"), "values": [{"tag": "B3", "value": [1]}, {"tag": "x" * 101}]},
        ]
    }
    status, _, body = post(service, document)
    assert status == 400
    assert body["accepted"] == 0 and body["problems_total"] == 3
    assert [p["pointer"] for p in body["problems"]] == [
        "/polls/1/timestamp",
        "/polls/2/values/0 (tag 'B3')",
        "/polls/2/values/1 (tag '" + "x" * 101 + "')",
    ]
    assert "RFC 3339" in body["problems"][0]["reason"]
    assert service.snapshot().accepted == before  # not even the good poll
    assert "B1" not in _stored(service)


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("wrong", 401), (TOKEN + "x", 401)],
)
def test_a_missing_or_wrong_token_is_refused(
    service: CollectorService, token: str | None, status: int
) -> None:
    code, headers, body = post(service, poll("2026-11-30T10:00:03Z", "N1"), token=token)
    assert code == status and body["error"] == "unauthorized"
    assert headers["www-authenticate"].startswith("Bearer ")
    assert "N1" not in _stored(service)


def test_size_type_and_method_are_checked(service: CollectorService) -> None:
    big = json.dumps(poll("2026-11-30T10:00:04Z", *[f"S{i:05d}" for i in range(3000)])).encode()
    assert len(big) > 65536
    status, _, body = post(service, big)
    assert status == 413 and "api.ingest.max_body_bytes" in body["detail"]
    assert post(service, b"{}", content_type="text/plain")[0] == 415
    status, headers, _ = post(service, b"", method="GET")
    assert (status, headers["allow"]) == (405, "POST")
    assert post(service, b"garbage")[0] == 400
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "-5",
        "HTTP_AUTHORIZATION": f"Bearer {TOKEN}",
        "wsgi.input": io.BytesIO(b"{}"),
    }
    (status, _, body), _ = service._ingest_endpoint().handle(environ)
    assert status.startswith("400") and b"is not a length" in body  # never read to the end of the stream
    # The service kept running through all of it.
    assert post(service, poll("2026-11-30T10:00:05Z", "AFTER"))[0] == 202


def test_while_shutting_down_values_are_refused_with_503(tmp_path: Path) -> None:
    buffer = TagBuffer(100)
    intake = PayloadIntake(
        Intake(buffer, lambda _items: 0), SourceCounters("http", endpoint="/"), partial=False
    )
    stopping = {"now": False}
    endpoint = IngestEndpoint(
        intake, token=None, max_body_bytes=4096, refusing=lambda: "shutting down" if stopping["now"] else None
    )
    body = json.dumps(poll("2026-11-30T10:00:06Z", "Z1")).encode()

    def call() -> tuple[str, list[tuple[str, str]]]:
        environ = {
            "REQUEST_METHOD": "POST",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
        }
        (status, _, _), headers = endpoint.handle(environ)
        return status, headers

    assert call()[0].startswith("202")
    stopping["now"] = True
    status, headers = call()
    assert status.startswith("503") and ("Retry-After", "5") in headers
    stopping["now"] = False
    buffer.close()  # the race: shutdown began between the check and the accept call
    assert call()[0].startswith("503")
    assert len(buffer) == 1


def test_beyond_loopback_without_a_token_the_endpoint_is_off_and_says_why(tmp_path: Path) -> None:
    # Built, not started: tests listen on loopback only.
    service = CollectorService(_config(tmp_path, COLLECTOR_API__HOST="0.0.0.0"))
    try:
        assert service.ingest is None
        environ = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO()}
        (status, _, body), _ = service._ingest_endpoint().handle(environ)
        assert status.startswith("403") and b"api.ingest.token" in body
    finally:
        service.sink.close()
