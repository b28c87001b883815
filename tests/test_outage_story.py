"""The outage told by the service itself: the status says why the circuit may open before it does,
errors carry their time, a line says when writing resumes and after how long (whether or not the
circuit opened), and a line says when a backup file is closed and ready to replay."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from collector.api.status import build_status
from collector.inventory import Inventory
from collector.retry import RetryPolicy
from collector.sinks.base import TransientSinkError
from collector.telemetry.window import WindowSummary
from tests.fakes import ManualClock
from tests.telemetry_support import ScriptedSink, values
from tests.test_status import SERVICE
from tests.waiting import wait_until


def _events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    return [
        (getattr(r, "collector_event", ""), getattr(r, "collector_fields", {}))
        for r in caplog.records
        if getattr(r, "collector_event", "")
    ]


def _status(rig: Any, sink_ok: bool) -> dict[str, Any]:
    return build_status(
        snapshot=rig.snapshot(),
        inventory=Inventory(()),
        window=WindowSummary(300.0, 1, 1, 10, 0.01),
        recent={},
        sink_ok=sink_ok,
        service=SERVICE,
    )


def test_writes_resuming_without_the_circuit_opening_are_told_with_the_length_of_the_failure(
    writer_rigs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="collector")
    clock = ManualClock()
    locked = TransientSinkError("database is locked", code="SQLITE_BUSY")
    rig = writer_rigs(ScriptedSink([locked]), clock=clock, workers=1, batch_size=10)
    rig.buffer.put_many(values(10))
    wait_until(lambda: rig.stats().retry_pending == 10)

    failing = _status(rig, sink_ok=False)
    assert failing["circuit"]["state"] == "closed"
    assert "database is locked" in failing["circuit"]["reason"]  # known before the circuit opens
    assert failing["writer"]["failing_since"] is not None
    assert failing["writer"]["last_error_at"] == failing["writer"]["failing_since"]

    clock.advance(1.0)  # the retry is due, and succeeds
    wait_until(lambda: rig.stats().written == 10)
    (resumed,) = [fields for event, fields in _events(caplog) if event == "writes_resumed"]
    assert resumed["failed_attempts"] == 1
    assert resumed["down_s"] >= 0
    assert "circuit_opened" not in [event for event, _ in _events(caplog)]

    recovered = _status(rig, sink_ok=True)
    assert recovered["writer"]["failing_since"] is None
    assert recovered["circuit"]["reason"] is None
    # The error stays on record, with its time.
    assert "database is locked" in recovered["writer"]["last_error"]
    assert recovered["writer"]["last_error_at"] is not None


def test_after_an_outage_the_backup_file_is_closed_ready_to_replay_and_writing_resumes(
    writer_rigs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="collector")
    clock = ManualClock()
    sink = ScriptedSink()
    sink.down = TransientSinkError("connection refused", code="CONNECTION")
    no_retries = RetryPolicy.of(0, [])  # the circuit opens at the first failure
    rig = writer_rigs(sink, clock=clock, workers=1, batch_size=10, probe_interval_s=5.0, retry=no_retries)
    rig.buffer.put_many(values(10))
    wait_until(lambda: rig.stats().circuit.state.value == "open")
    wait_until(lambda: rig.stats().backed_up == 10)

    sink.down = None
    clock.advance(5.0)  # the probe finds the database back
    wait_until(lambda: rig.stats().circuit.state.value == "closed")
    rig.buffer.put_many(values(10, prefix="B"))
    wait_until(lambda: rig.stats().written == 10)

    events = _events(caplog)
    names = [event for event, _ in events]
    assert names.index("circuit_opened") < names.index("circuit_closed") < names.index("writes_resumed")
    (closed,) = [fields for event, fields in events if event == "backup_file_closed"]
    assert closed["rows"] == 10 and closed["reason"] == "the database is back"
    assert closed["path"] in {str(p) for p in (rig.backup_dirs[0]).glob("backup_*.csv")}
    (resumed,) = [fields for event, fields in events if event == "writes_resumed"]
    assert resumed["failed_attempts"] == 1
    assert names.index("backup_file_closed") < names.index("writes_resumed")
