"""Traces: one span per batch attempt with the database conventions; retries and backups visible."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from collector.model import TagValue
from collector.sinks.base import PermanentSinkError, TransientSinkError, WriteResult
from collector.telemetry.tracing import configure_tracing, default_instance_id, exporter_names
from tests.telemetry_support import (
    RecordingListener,
    ScriptedSink,
    free_port,
    make_writer,
    memory_tracer,
    values,
)

ROOT = Path(__file__).resolve().parent.parent


def _attempts(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    found = [s for s in spans if s.name == "collector.batch.write"]
    return sorted(found, key=lambda s: s.attributes["collector.batch.attempt"])  # type: ignore[index]


def test_a_committed_batch_is_one_span_with_database_attributes(tmp_path: Path) -> None:
    provider, exporter = memory_tracer()
    sink, listener = ScriptedSink(reject=[3]), RecordingListener()
    rig = make_writer(tmp_path, sink, listener, tracer=provider.get_tracer("t"))
    rig.writer.start()
    try:
        rig.buffer.put_many(values(10))
        listener.wait_for(attempts=1, saved=1)  # the rejected row is saved too
    finally:
        rig.writer.stop(5)
    (span,) = _attempts(exporter.get_finished_spans())
    attrs = dict(span.attributes or {})
    assert span.kind is SpanKind.INTERNAL  # a sink's own driver spans are the CLIENT spans
    assert attrs["db.system.name"] == "sqlite"
    assert attrs["db.operation.name"] == "BATCH INSERT"
    assert attrs["db.collection.name"] == "TAG_DATA"
    assert attrs["db.operation.batch.size"] == 10
    assert attrs["collector.batch.attempt"] == 1
    assert attrs["collector.batch.outcome"] == "written"
    assert (attrs["collector.rows.written"], attrs["collector.rows.rejected"]) == (9, 1)
    assert len(sink.rows) == 9
    assert span.status.status_code is StatusCode.UNSET
    # The rejected row's file write is a child of the attempt that produced it.
    (rejected,) = [s for s in exporter.get_finished_spans() if s.name == "collector.rejected.write"]
    assert rejected.parent is not None and rejected.parent.span_id == span.context.span_id


def test_retries_share_the_first_attempts_trace_and_carry_the_error(tmp_path: Path) -> None:
    provider, exporter = memory_tracer()
    busy = TransientSinkError("database is locked", code="SQLITE_BUSY", from_database=True)
    sink, listener = ScriptedSink([busy, busy]), RecordingListener()
    rig = make_writer(tmp_path, sink, listener, tracer=provider.get_tracer("t"))
    rig.writer.start()
    try:
        rig.buffer.put_many(values(10))
        listener.wait_for(attempts=3)
    finally:
        rig.writer.stop(5)
    first, second, third = _attempts(exporter.get_finished_spans())
    assert [s.attributes["collector.batch.outcome"] for s in (first, second, third)] == [  # type: ignore[index]
        "retry",
        "retry",
        "written",
    ]
    assert {s.context.trace_id for s in (first, second, third)} == {first.context.trace_id}
    assert first.parent is None
    assert second.parent is not None and second.parent.span_id == first.context.span_id
    assert third.parent is not None and third.parent.span_id == first.context.span_id
    for failed in (first, second):
        assert failed.status.status_code is StatusCode.ERROR
        assert failed.attributes["error.type"] == "SQLITE_BUSY"  # type: ignore[index]
        assert failed.attributes["db.response.status_code"] == "SQLITE_BUSY"  # type: ignore[index]
        assert [e.name for e in failed.events] == ["exception"]
    assert "error.type" not in (third.attributes or {})
    assert len(sink.rows) == 10


class _Miscounting(ScriptedSink):
    """Says it wrote one row fewer than it was given, once: the writer must not trust that."""

    def __init__(self) -> None:
        super().__init__()
        self.lied = False

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        result = super().write(batch)
        if not self.lied:
            self.lied = True
            result.written -= 1
        return result


def test_the_collectors_own_codes_are_an_error_type_never_a_database_status_code(tmp_path: Path) -> None:
    provider, exporter = memory_tracer()
    sink, listener = _Miscounting(), RecordingListener()
    rig = make_writer(tmp_path, sink, listener, tracer=provider.get_tracer("t"))
    rig.writer.start()
    try:
        rig.buffer.put_many(values(10))
        listener.wait_for(attempts=2)
    finally:
        rig.writer.stop(5)
    first, second = _attempts(exporter.get_finished_spans())
    attrs = dict(first.attributes or {})
    assert attrs["error.type"] == "SINK_MISCOUNT"
    assert "db.response.status_code" not in attrs  # the database said nothing of the kind
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes["collector.batch.outcome"] == "written"  # type: ignore[index]


def test_a_batch_that_exhausts_its_retries_shows_its_backup_write_in_the_trace(tmp_path: Path) -> None:
    provider, exporter = memory_tracer()
    down = TransientSinkError("connection refused")
    sink, listener = ScriptedSink([down, down, down]), RecordingListener()
    rig = make_writer(tmp_path, sink, listener, tracer=provider.get_tracer("t"), retries=2)
    rig.writer.start()
    try:
        rig.buffer.put_many(values(10))
        listener.wait_for(attempts=3, saved=1)
    finally:
        rig.writer.stop(5)
    spans = exporter.get_finished_spans()
    attempts = _attempts(spans)
    assert [s.attributes["collector.batch.outcome"] for s in attempts] == ["retry", "retry", "backed_up"]  # type: ignore[index]
    # No database code: error.type falls back to the exception class.
    assert attempts[0].attributes["error.type"] == "TransientSinkError"  # type: ignore[index]
    (backup,) = [s for s in spans if s.name == "collector.backup.write"]
    assert backup.parent is not None and backup.parent.span_id == attempts[-1].context.span_id
    assert backup.context.trace_id == attempts[0].context.trace_id
    assert backup.attributes["collector.rows"] == 10  # type: ignore[index]
    backup_file = Path(str(backup.attributes["collector.spool.file"]))  # type: ignore[index]
    assert len(backup_file.read_text().splitlines()) == 1 + 10


def test_a_permanent_error_is_not_retried_and_the_span_says_why(tmp_path: Path) -> None:
    provider, exporter = memory_tracer()
    sink = ScriptedSink([PermanentSinkError("no such table: TAG_DATA", code="SQLITE_ERROR")])
    listener = RecordingListener()
    rig = make_writer(tmp_path, sink, listener, tracer=provider.get_tracer("t"))
    rig.writer.start()
    try:
        rig.buffer.put_many(values(5))
        listener.wait_for(attempts=1, saved=1)
    finally:
        rig.writer.stop(5)
    (span,) = _attempts(exporter.get_finished_spans())
    assert span.attributes["collector.batch.outcome"] == "backed_up"  # type: ignore[index]
    assert span.attributes["collector.error.kind"] == "permanent"  # type: ignore[index]
    # A batch of 5 is still a batch; a single value would not carry db.operation.batch.size.
    assert span.attributes["db.operation.batch.size"] == 5  # type: ignore[index]


def test_without_a_tracer_the_writer_still_works(tmp_path: Path) -> None:
    sink, listener = ScriptedSink([TransientSinkError("blip")]), RecordingListener()
    rig = make_writer(tmp_path, sink, listener)
    rig.writer.start()
    try:
        rig.buffer.put_many(values(10))
        listener.wait_for(attempts=2)
    finally:
        rig.writer.stop(5)
    assert len(sink.rows) == 10


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, []),
    ],
)
def test_the_environment_chooses_the_exporters(environ: dict[str, str], expected: list[str]) -> None:
    assert exporter_names(environ) == expected


def test_nothing_is_recorded_without_an_exporter() -> None:
    tracing = configure_tracing({})
    assert tracing.provider is None
    with tracing.tracer.start_as_current_span("x") as span:
        assert not span.is_recording()


class _Receiver(BaseHTTPRequestHandler):
    requests: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def otlp_receiver() -> Iterator[str]:
    _Receiver.requests = []
    server = HTTPServer(("127.0.0.1", free_port()), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_spans_reach_an_otlp_http_endpoint_named_by_the_environment(
    otlp_receiver: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "line-3-collector")
    tracing = configure_tracing()
    assert tracing.exporters == ("otlp",)
    sink, listener = ScriptedSink(), RecordingListener()
    rig = make_writer(tmp_path, sink, listener, tracer=tracing.tracer)
    rig.writer.start()
    try:
        rig.buffer.put_many(values(10))
        listener.wait_for(attempts=1)
    finally:
        rig.writer.stop(5)
        tracing.shutdown()  # flushes the batch processor
    paths = {path for path, _ in _Receiver.requests}
    assert paths == {"/v1/traces"}
    names, services = [], set()
    for _, body in _Receiver.requests:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    services.add(attr.value.string_value)
            names += [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert names == ["collector.batch.write"]
    assert services == {"line-3-collector"}


class _TracingSink(ScriptedSink):
    """A sink that traces its driver call, as the Oracle sink does."""

    def __init__(self, tracer: trace.Tracer) -> None:
        super().__init__()
        self._tracer = tracer

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        with self._tracer.start_as_current_span("BATCH INSERT TAG_DATA", kind=SpanKind.CLIENT):
            return super().write(batch)


def test_a_sinks_own_client_span_nests_under_the_writers_span(tmp_path: Path) -> None:
    provider, exporter = memory_tracer()
    tracer = provider.get_tracer("t")
    sink, listener = _TracingSink(tracer), RecordingListener()
    rig = make_writer(tmp_path, sink, listener, tracer=tracer)
    rig.writer.start()
    try:
        rig.buffer.put_many(values(10))
        listener.wait_for(attempts=1)
    finally:
        rig.writer.stop(5)
    (writer_span,) = _attempts(exporter.get_finished_spans())
    (client,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert client.parent is not None and client.parent.span_id == writer_span.context.span_id
    assert client.name != writer_span.name


_GLOBAL_SCRIPT = """
import json, sys
from opentelemetry import trace
from collector.telemetry.tracing import configure_tracing

sink_tracer = trace.get_tracer("a.sink")  # taken at construction, before tracing is configured
tracing = configure_tracing()
tracing.install_globally()
with tracing.tracer.start_as_current_span("collector.batch.write"):
    with sink_tracer.start_as_current_span("BATCH INSERT TAG_DATA"):
        pass
tracing.shutdown()
"""


def test_installed_globally_a_sinks_spans_are_exported_with_the_writers(tmp_path: Path) -> None:
    # In a process of its own: the global provider can be set only once per process.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(PYTHONPATH=str(ROOT), OTEL_TRACES_EXPORTER="console")
    result = subprocess.run(
        [sys.executable, "-c", _GLOBAL_SCRIPT],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    spans = {span["name"]: span for span in _json_objects(result.stdout)}
    writer, sink = spans["collector.batch.write"], spans["BATCH INSERT TAG_DATA"]
    assert sink["parent_id"] == writer["context"]["span_id"]
    assert sink["context"]["trace_id"] == writer["context"]["trace_id"]


def _json_objects(text: str) -> list[dict[str, Any]]:
    decoder, found, index = json.JSONDecoder(), [], 0
    while (start := text.find("{", index)) != -1:
        obj, index = decoder.raw_decode(text, start)
        found.append(obj)
    return found


def test_the_resource_names_the_instance_so_plants_can_be_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    env = {"OTEL_TRACES_EXPORTER": "console"}
    tracing = configure_tracing(env, instance_id="plant-7:9108")
    try:
        assert tracing.provider is not None
        attrs = tracing.provider.resource.attributes
        assert attrs["service.instance.id"] == "plant-7:9108"
        assert attrs["service.name"] == "plc-tag-collector"
    finally:
        tracing.shutdown()
    # The standard variable wins over the default.
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=line-3")
    tracing = configure_tracing(env, instance_id="plant-7:9108")
    try:
        assert tracing.provider is not None
        assert tracing.provider.resource.attributes["service.instance.id"] == "line-3"
    finally:
        tracing.shutdown()


def test_the_default_instance_is_the_host_and_the_api_port() -> None:
    assert default_instance_id(9108) == f"{socket.gethostname()}:9108"
    assert default_instance_id(None) == socket.gethostname()
