"""Prometheus metrics: read from the snapshot at scrape time, histograms fed per batch."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opentelemetry import trace
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

from collector.config import load_config
from collector.inventory import scan
from collector.service import CollectorService
from collector.sinks.base import TransientSinkError, WriteResult
from collector.telemetry import ListenerChain, Telemetry
from collector.telemetry.listener import TelemetryListener
from collector.telemetry.metrics import VALUE_OUTCOMES, SnapshotCollector
from collector.telemetry.tracing import Tracing
from collector.writer import BatchAttempt
from tests.telemetry_support import RecordingListener, ScriptedSink, make_writer, memory_tracer, values


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exported"
    return value


def test_every_counter_comes_from_one_snapshot_and_the_identity_holds(tmp_path: Path) -> None:
    busy = TransientSinkError("locked")
    sink, listener = ScriptedSink([busy, busy, busy], reject=[0]), RecordingListener()
    rig = make_writer(tmp_path, sink, listener, retries=2)
    rig.writer.start()
    try:
        rig.buffer.put_many(values(10, prefix="A"))  # fails 3 times: backed up, circuit opens
        listener.wait_for(attempts=3, saved=1)
        rig.writer.circuit.probe_done(True)  # the database is back
        rig.buffer.put_many(values(30, prefix="B"))  # 3 batches, the first row of each rejected
        listener.wait_for(attempts=6, saved=4)
    finally:
        rig.writer.stop(5)
    snapshot = rig.snapshot()
    registry = CollectorRegistry()
    registry.register(
        SnapshotCollector(
            lambda: snapshot, lambda: scan([tmp_path / "backup"]), lambda: True, build_info={"version": "1"}
        )
    )
    assert _sample(registry, "collector_buffer_inserted_total") == 40
    assert _sample(registry, "collector_values_total", outcome="written") == len(sink.rows) == 27
    assert _sample(registry, "collector_values_total", outcome="rejected") == 3
    assert _sample(registry, "collector_values_total", outcome="backed_up") == 10
    assert _sample(registry, "collector_batches_total", outcome="written") == 3
    assert _sample(registry, "collector_batches_total", outcome="backed_up") == 1
    assert _sample(registry, "collector_write_attempts_failed_total") == 3
    assert _sample(registry, "collector_write_retries_total") == 2
    assert _sample(registry, "collector_circuit_trips_total") == 1
    assert _sample(registry, "collector_circuit_open") == 0
    # The waiting files, as the operator would count them in the directory.
    files = sorted((tmp_path / "backup").glob("*.csv"))
    assert _sample(registry, "collector_backup_files", kind="backup") == 1
    assert _sample(registry, "collector_backup_files", kind="rejected") == 1
    assert _sample(registry, "collector_backup_bytes", kind="backup") + _sample(
        registry, "collector_backup_bytes", kind="rejected"
    ) == sum(f.stat().st_size for f in files)
    assert _sample(registry, "collector_backup_rows_total", kind="rejected") == 3
    # The identity, in metric form.
    settled = sum(_sample(registry, "collector_values_total", outcome=o) for o in VALUE_OUTCOMES)
    in_buffer = _sample(registry, "collector_buffer_size")
    in_flight = _sample(registry, "collector_values_in_flight")
    assert settled + in_buffer + in_flight == _sample(registry, "collector_values_accepted_total")


def test_sink_up_follows_failures_probes_and_the_circuit(tmp_path: Path) -> None:
    telemetry = Telemetry(
        registry=CollectorRegistry(), process_metrics=False, tracing=Tracing(trace.NoOpTracer())
    )
    sink, recorder = ScriptedSink(), RecordingListener()
    rig = make_writer(tmp_path, sink, ListenerChain(telemetry.listener, recorder), retries=1)
    telemetry.watch(rig.snapshot, lambda: scan([]), build_info={"version": "1"})
    registry = telemetry.registry
    assert _sample(registry, "collector_sink_up") == 0  # nothing has answered yet
    assert _sample(registry, "collector_last_success_timestamp_seconds") == 0
    telemetry.listener.sink_answered(True)  # the check at start
    assert _sample(registry, "collector_sink_up") == 1
    rig.writer.start()
    try:
        sink.down = TransientSinkError("down")
        rig.buffer.put_many(values(10))
        recorder.wait_for(attempts=2, saved=1)  # failed twice, backed up, circuit open
        assert _sample(registry, "collector_sink_up") == 0
        assert _sample(registry, "collector_circuit_open") == 1
        sink.down = None
        rig.writer.circuit.probe_done(True)
        telemetry.listener.circuit_changed(rig.writer.circuit.status())
        assert _sample(registry, "collector_sink_up") == 1
    finally:
        rig.writer.stop(5)


def test_histograms_observe_each_committed_batch_with_its_trace_as_exemplar() -> None:
    registry = CollectorRegistry()
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    listener = TelemetryListener(registry, wall_clock=now.timestamp)
    batch = values(500, start=now - timedelta(seconds=1.5))
    provider, _ = memory_tracer()
    with provider.get_tracer("t").start_as_current_span("attempt") as span:
        listener.batch_attempted(BatchAttempt(batch, 1, 0.012, WriteResult(written=500), None))
        trace_id = format(span.get_span_context().trace_id, "032x")
    listener.batch_attempted(BatchAttempt(batch[:20], 1, 3.0, None, TransientSinkError("x")))
    assert _sample(registry, "collector_batch_size_rows_count") == 1
    assert _sample(registry, "collector_batch_size_rows_bucket", le="500.0") == 1
    assert _sample(registry, "collector_batch_size_rows_bucket", le="250.0") == 0
    assert _sample(registry, "collector_write_duration_seconds_count", outcome="success") == 1
    assert _sample(registry, "collector_write_duration_seconds_count", outcome="failure") == 1
    assert _sample(registry, "collector_write_duration_seconds_sum", outcome="failure") == 3.0
    assert abs(_sample(registry, "collector_end_to_end_latency_seconds_sum") - 1.5) < 1e-6
    assert _sample(registry, "collector_end_to_end_latency_seconds_bucket", le="1.5") == 1
    assert f'trace_id="{trace_id}"' in openmetrics(registry).decode()
    summary = listener.window.summary()
    assert (summary.successful_writes, summary.failed_writes, summary.average_batch_size) == (1, 1, 500)
    assert not listener.sink_ok


def test_the_service_exports_what_the_database_and_the_files_hold(tmp_path: Path) -> None:
    config = load_config(
        None,
        environ={
            "COLLECTOR_SOURCE__GROUPS": "4",
            "COLLECTOR_SOURCE__TAGS_PER_GROUP": "50",
            "COLLECTOR_SOURCE__INTERVAL_S": "0.2",
            "COLLECTOR_SINK__TYPE": "sqlite",
            "COLLECTOR_SINK__PATH": str(tmp_path / "tags.db"),
            "COLLECTOR_BACKUP__DIR": str(tmp_path / "backup"),
            "COLLECTOR_API__ENABLED": "false",
        },
        env_file=None,
    )
    registry = CollectorRegistry()
    service = CollectorService(
        config, telemetry=Telemetry(registry=registry, tracing=Tracing(trace.NoOpTracer()))
    )
    service.run(1.5, install_signals=False)
    with sqlite3.connect(tmp_path / "tags.db") as db:
        (rows,) = db.execute("SELECT count(*) FROM TAG_DATA").fetchone()
    generated = service.simulator.generated if service.simulator else 0
    assert rows > 0
    assert _sample(registry, "collector_values_total", outcome="written") == rows
    assert _sample(registry, "collector_values_accepted_total") == generated
    assert _sample(registry, "collector_buffer_size") == 0
    assert _sample(registry, "collector_batch_size_rows_sum") == rows
    assert _sample(registry, "process_resident_memory_bytes") > 0
    assert (
        _sample(
            registry,
            "collector_build_info",
            python_version=__import__("platform").python_version(),
            sink="sqlite",
            version=__import__("collector").__version__,
        )
        == 1
    )


def test_the_cached_exposition_is_the_librarys_byte_for_byte(tmp_path: Path) -> None:
    """The encoder behind /metrics formats names and labels once; its output, in both formats and
    with exemplars, must be exactly what prometheus-client itself would write."""
    from prometheus_client import generate_latest as text
    from prometheus_client.core import GaugeMetricFamily

    from collector.telemetry.exposition import CachedEncoder

    registry = CollectorRegistry()
    listener = TelemetryListener(registry)
    provider, _ = memory_tracer()
    with provider.get_tracer("t").start_as_current_span("attempt"):
        listener.batch_attempted(BatchAttempt(values(20), 1, 0.012, WriteResult(written=20), None))
    listener.batch_attempted(BatchAttempt(values(5), 1, 3.0, None, TransientSinkError("x")))

    class Odd:
        """Names and values the cache must not mangle: escapes, a timestamp (left to the library)."""

        def collect(self):  # type: ignore[no-untyped-def]
            family = GaugeMetricFamily("odd_gauge", 'doc with "quotes" and \\ and\nnewline', labels=["path"])
            family.add_metric(['C:\\dir "x"\nnext'], float("nan"))
            family.add_metric(["plain"], 1e21)
            yield family
            stamped = GaugeMetricFamily("stamped", "with a timestamp")
            stamped.add_metric([], 1.5, timestamp=1_795_000_000.5)
            yield stamped

    registry.register(Odd())  # type: ignore[arg-type]
    encoder = CachedEncoder()
    for _ in range(2):  # the second time from the cache
        assert encoder.text(registry) == text(registry)
        assert encoder.openmetrics(registry) == openmetrics(registry)
    assert b"trace_id" in encoder.openmetrics(registry)
