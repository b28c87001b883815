"""The HTTP API against a running service: endpoints, errors, and a schemathesis fuzz run."""

from __future__ import annotations

import http.client
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.config import load_config
from collector.service import CollectorService


def _config(tmp: Path, port: int) -> Any:
    return load_config(
        None,
        environ={
            "COLLECTOR_SOURCE__GROUPS": "2",
            "COLLECTOR_SOURCE__TAGS_PER_GROUP": "50",
            "COLLECTOR_SOURCE__INTERVAL_S": "0.5",
            "COLLECTOR_SINK__TYPE": "sqlite",
            "COLLECTOR_SINK__PATH": str(tmp / "tags.db"),
            "COLLECTOR_BACKUP__DIR": str(tmp / "backup"),
            "COLLECTOR_API__PORT": str(port),
        },
        env_file=None,
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorService]:
    running = CollectorService(_config(tmp_path_factory.mktemp("api"), 0))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _get(
    service: CollectorService, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    assert service.api is not None and service.api.port is not None
    conn = http.client.HTTPConnection("127.0.0.1", service.api.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_the_endpoints_answer_on_one_port(service: CollectorService) -> None:
    status, headers, body = _get(service, "/api/v1/status")
    assert status == 200 and headers["content-type"] == "application/json"
    document = json.loads(body)
    assert document["buffer"]["capacity"] == 10_000
    assert document["service"]["state"] == "running"
    assert document["values"]["balanced"] is True

    status, headers, body = _get(service, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b"\ncollector_buffer_capacity 10000.0\n" in body
    assert b"process_resident_memory_bytes" in body

    status, headers, body = _get(service, "/metrics", headers={"Accept": "application/openmetrics-text"})
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")

    for probe in ("/healthz", "/readyz"):
        status, _, body = _get(service, probe)
        assert (status, json.loads(body)) == (200, {"status": "ok", "problems": []})

    status, _, body = _get(service, "/api/v1/openapi.json")
    assert json.loads(body)["paths"].keys() >= {"/api/v1/status", "/metrics", "/healthz", "/readyz"}


def test_unknown_paths_and_methods_are_client_errors(service: CollectorService) -> None:
    status, headers, body = _get(service, "/api/v2/status")
    assert status == 404 and json.loads(body)["error"] == "not found"
    status, headers, body = _get(service, "/metrics", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, headers, body = _get(service, "/api/v1/status", method="DELETE")
    assert status == 405
    status, headers, body = _get(service, "/api/v1/status", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"]),
    path=st.text(alphabet="abcz/._-%?=&[]~09", max_size=40).map(lambda p: "/" + p),
)
def test_no_request_line_causes_a_server_error(service: CollectorService, method: str, path: str) -> None:
    status, _, _ = _get(service, path, method=method)
    assert 200 <= status < 500


def test_readiness_fails_while_the_database_is_marked_down(service: CollectorService) -> None:
    service.writer.circuit.trip("test: database unreachable")
    try:
        status, _, body = _get(service, "/readyz")
        assert status == 503
        assert json.loads(body)["problems"] == ["database unavailable: test: database unreachable"]
        assert _get(service, "/healthz")[0] == 200  # alive all the same
        document = json.loads(_get(service, "/api/v1/status")[2])
        assert "CollectorDatabaseDown" in [a["name"] for a in document["alerts"]]
    finally:
        service.writer.circuit.probe_done(True)
    assert _get(service, "/readyz")[0] == 200


def test_a_taken_port_leaves_the_collector_collecting(tmp_path: Path) -> None:
    events: list[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            events.append(getattr(record, "collector_event", ""))

    recorder = Recorder(logging.CRITICAL)
    api_log = logging.getLogger("collector.api")
    api_log.addHandler(recorder)
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            service = CollectorService(_config(tmp_path, taken.getsockname()[1]))
            report = service.run(1.2, install_signals=False)
    finally:
        api_log.removeHandler(recorder)
    assert service.api is not None and service.api.port is None and service.api.error
    assert "api_unavailable" in events
    assert report.snapshot.writer.written > 0


@pytest.fixture
def api_schema(service: CollectorService) -> Any:
    assert service.api is not None
    return schemathesis.openapi.from_url(f"{service.api.url}/api/v1/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_running_service_conforms_to_its_openapi_document(case: Any) -> None:
    case.call_and_validate()


def test_liveness_fails_when_a_pipeline_thread_has_stopped(tmp_path: Path) -> None:
    service = CollectorService(_config(tmp_path, 0))
    service.start()
    try:
        assert _get(service, "/healthz")[0] == 200
        assert service.simulator is not None
        service.simulator.stop()  # as if the polling thread had died
        status, _, body = _get(service, "/healthz")
        assert status == 503
        assert json.loads(body)["problems"] == ["thread simulator is not running"]
        assert _get(service, "/readyz")[0] == 503
    finally:
        service.stop()
