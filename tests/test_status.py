"""The status document and its alerts, as pure functions of the service's numbers."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from collector.api.openapi import openapi_document
from collector.api.status import ServiceInfo, active_alerts, build_status
from collector.circuit import CircuitState, CircuitStatus
from collector.inventory import Inventory, SpoolFile
from collector.telemetry.history import CounterHistory
from collector.telemetry.window import RollingWindow, WindowSummary
from tests.telemetry_support import snapshot_of, writer_stats

HEALTHY_WINDOW = WindowSummary(
    300.0, successful_writes=600, failed_writes=0, rows_written=300_000, duration_sum_s=6.0
)
NO_FILES = Inventory(())
SERVICE = ServiceInfo(
    "1.0", "oracle", "TAG_DATA", "simulator", 1_795_000_000.0, "running", "db:1521/FREEPDB1", "/b", None
)
DOWN = CircuitStatus(
    CircuitState.OPEN, "retries exhausted: ORA-12541: no listener", False, 1_795_000_050.0, 1, 3
)


def _names(alerts: list[Any]) -> list[str]:
    return [a.name for a in alerts]


def _status(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "snapshot": snapshot_of(writer_stats()),
        "inventory": NO_FILES,
        "window": HEALTHY_WINDOW,
        "recent": {},
        "sink_ok": True,
        "service": SERVICE,
    }
    args.update(kwargs)
    return build_status(**args)


def _openapi_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` as JSON Schema's type list, refs pointed at the document."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_jsonschema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "anyOf" in node:
        out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    elif node.get("nullable"):
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _validate(document: dict[str, Any]) -> None:
    spec = _openapi_to_jsonschema(openapi_document())
    schema = {**spec["components"]["schemas"]["Status"], "components": spec["components"]}
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())


def test_a_healthy_service_has_no_alerts_and_reports_its_figures() -> None:
    document = _status()
    _validate(document)
    assert document["alerts"] == []
    assert document["buffer"]["status"] == "ok"
    assert document["buffer"]["utilization"] == pytest.approx(0.02)
    writer = document["writer"]
    assert (writer["successful_writes"], writer["failed_writes"], writer["success_rate"]) == (20, 0, 1.0)
    assert writer["rolling"]["average_batch_size"] == 500.0
    assert writer["rolling"]["average_write_latency_s"] == pytest.approx(0.01)
    assert document["values"]["balanced"] is True
    assert document["service"]["uptime_s"] == 100.0


def test_a_full_buffer_with_the_database_down_is_critical_and_shows_the_overflow() -> None:
    """US3-4."""
    stats = writer_stats(
        buffer_size=9_600, buffer_inserted=20_834, buffer_overflow=1_234, circuit=DOWN, buffer_removed=10_000
    )
    document = _status(snapshot=snapshot_of(stats), recent={"overflow": 400}, sink_ok=False)
    _validate(document)
    alerts = document["alerts"]
    assert alerts[0]["name"] == "CollectorBufferFullDatabaseDown"
    assert alerts[0]["severity"] == "critical"
    assert "1234 discarded" in alerts[0]["summary"]
    assert alerts[0]["runbook"] == "/runbook#collectorbufferfulldatabasedown"
    names = {a["name"] for a in alerts}
    assert {"CollectorBufferOverflow", "CollectorDatabaseDown"} <= names
    # A consequence of the database being down, not a second problem.
    assert "CollectorBufferHigh" not in names
    assert document["buffer"]["status"] == "critical"
    assert document["buffer"]["overflow"] == 1_234
    assert document["circuit"]["state"] == "open"


def test_overflow_long_ago_is_reported_in_totals_but_not_as_an_alert() -> None:
    stats = writer_stats(buffer_inserted=10_700, buffer_overflow=500)
    document = _status(snapshot=snapshot_of(stats), recent={"overflow": 0})
    assert document["buffer"]["overflow"] == 500
    assert document["buffer"]["overflow_ratio"] == pytest.approx(500 / 10_700, abs=1e-6)
    assert document["alerts"] == []


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (WindowSummary(300.0, 100, 0, 50_000, 250.0), ["CollectorWriteLatencyHigh"]),
        (WindowSummary(300.0, 990, 10, 495_000, 10.0), ["CollectorWriteSuccessRateLow"]),
        (WindowSummary(300.0, 999, 1, 499_500, 10.0), []),
        (WindowSummary(300.0, 0, 0, 0, 0.0), []),
    ],
)
def test_rolling_latency_and_success_rate_against_the_specification(
    window: WindowSummary, expected: list[str]
) -> None:
    alerts = active_alerts(snapshot_of(writer_stats()), NO_FILES, window, {}, True)
    assert _names(alerts) == expected


def test_waiting_backup_files_lost_values_and_failing_backups_are_alerts() -> None:
    files = Inventory(
        (
            SpoolFile(Path("backup/backup_20261128_120000.csv"), "backup", 4096, time.time()),
            SpoolFile(Path("backup/rejected_20261128_120000.csv"), "rejected", 100, time.time()),
        )
    )
    alerts = active_alerts(
        snapshot_of(writer_stats()), files, HEALTHY_WINDOW, {"lost": 7, "backup_failures": 2}, True
    )
    assert _names(alerts) == [
        "CollectorValuesLost",
        "CollectorBackupWriteFailing",
        "CollectorBackupFilesWaiting",
    ]
    assert "4096 bytes" in alerts[-1].summary
    document = _status(inventory=files)
    _validate(document)
    assert (document["backups"]["files"], document["backups"]["rejected_files"]) == (1, 1)


def test_a_failing_write_before_the_circuit_opens_is_already_database_down() -> None:
    stats = writer_stats(last_error="SQLITE_BUSY: database is locked", attempts_failed=1)
    (alert,) = active_alerts(snapshot_of(stats), NO_FILES, HEALTHY_WINDOW, {}, False)
    assert alert.name == "CollectorDatabaseDown"
    assert "database is locked" in alert.summary


def test_the_rolling_window_forgets_attempts_older_than_five_minutes() -> None:
    now = [1000.0]
    window = RollingWindow(300.0, slots=30, clock=lambda: now[0])
    window.record(True, 500, 0.02)
    now[0] += 100
    window.record(False, 500, 3.0)  # a failed attempt is not latency
    window.record(True, 300, 0.04)
    summary = window.summary()
    assert (summary.successful_writes, summary.failed_writes) == (2, 1)
    assert summary.average_batch_size == 400
    assert summary.average_write_latency_s == pytest.approx((0.02 + 0.04) / 2)
    now[0] += 250  # the first attempt is now 350 s old
    summary = window.summary()
    assert (summary.successful_writes, summary.failed_writes, summary.rows_written) == (1, 1, 300)
    now[0] += 300
    assert window.summary().attempts == 0
    assert window.summary().success_rate is None


def test_counter_history_reports_growth_over_the_horizon_only() -> None:
    now = [0.0]
    history = CounterHistory(300.0, clock=lambda: now[0])
    assert history.increase({"overflow": 40}) == {"overflow": 40}  # nothing recorded: since start
    for t in range(0, 601, 5):
        now[0] = float(t)
        history.record({"overflow": 100 if t < 200 else 150})
    assert history.increase({"overflow": 150}) == {"overflow": 0}  # the jump was 400 s ago
    now[0] = 605.0
    assert history.increase({"overflow": 180}) == {"overflow": 30}


def test_the_full_buffer_alert_follows_the_configured_spill_level() -> None:
    stats = writer_stats(buffer_size=8_500, buffer_inserted=20_000, buffer_removed=11_500, circuit=DOWN)
    down_at_85 = snapshot_of(stats)
    quiet = active_alerts(down_at_85, NO_FILES, HEALTHY_WINDOW, {}, False, spill_ratio=0.9)
    assert "CollectorBufferFullDatabaseDown" not in _names(quiet)
    full = active_alerts(down_at_85, NO_FILES, HEALTHY_WINDOW, {}, False, spill_ratio=0.8)
    assert _names(full)[0] == "CollectorBufferFullDatabaseDown"
    # Held under the level by the spill guard, which is saving values: full all the same.
    spilling = active_alerts(down_at_85, NO_FILES, HEALTHY_WINDOW, {"spilled": 500}, False, spill_ratio=0.9)
    assert _names(spilling)[0] == "CollectorBufferFullDatabaseDown"
    document = _status(snapshot=down_at_85, sink_ok=False, spill_ratio=0.8)
    _validate(document)
    assert document["buffer"]["spill_ratio"] == 0.8


def test_a_permanent_error_is_its_own_alert_not_database_down() -> None:
    dropped = CircuitStatus(CircuitState.OPEN, "ORA-00942: table or view does not exist", True, 1.0, 1, 2)
    names = _names(
        active_alerts(snapshot_of(writer_stats(circuit=dropped)), NO_FILES, HEALTHY_WINDOW, {}, False)
    )
    assert names == ["CollectorDatabasePermanentError"]


def test_a_database_never_reached_is_down_not_healthy() -> None:
    stats = writer_stats(last_success_at=None)
    (alert,) = active_alerts(snapshot_of(stats), NO_FILES, WindowSummary(300.0, 0, 0, 0, 0.0), {}, False)
    assert alert.name == "CollectorDatabaseDown"
    assert "has not answered yet" in alert.summary


def test_a_stalled_intake_and_stalled_writes_are_judged_over_a_full_span() -> None:
    snapshot = snapshot_of(writer_stats(last_success_at=1_795_000_000.0))
    idle = {"accepted": 0}
    assert active_alerts(snapshot, NO_FILES, HEALTHY_WINDOW, idle, True) == []  # just started
    names = _names(active_alerts(snapshot, NO_FILES, HEALTHY_WINDOW, idle, True, history_s=300.0))
    assert names == ["CollectorIntakeStalled"]
    stuck = replace(snapshot_of(writer_stats(last_success_at=1_795_000_000.0)), taken_at=1_795_000_400.0)
    names = _names(active_alerts(stuck, NO_FILES, HEALTHY_WINDOW, {"accepted": 9_000}, True, history_s=300.0))
    assert names == ["CollectorWritesStalled"]


def test_the_fallback_directory_and_a_full_backup_disk_are_alerts() -> None:
    from collector.telemetry.disk import DiskReading

    base = snapshot_of(writer_stats())
    fallback = replace(base, backup=replace(base.backup, using_fallback=True))
    disks = [
        DiskReading("primary", "/var/lib/collector/backup", 4 * 2**30, 100 * 2**30),
        DiskReading("fallback", "/mnt/spare", 50 * 2**30, 100 * 2**30),
    ]
    names = _names(active_alerts(fallback, NO_FILES, HEALTHY_WINDOW, {}, True, disks=disks))
    assert names == ["CollectorBackupDiskAlmostFull", "CollectorBackupFallbackInUse"]
    document = _status(snapshot=fallback, disks=disks)
    _validate(document)
    assert [d["directory"] for d in document["backups"]["disks"]] == ["primary", "fallback"]


def test_an_outage_silences_its_consequences() -> None:
    files = Inventory((SpoolFile(Path("backup/backup_20261128_120000.csv"), "backup", 4096, time.time()),))
    flaky = WindowSummary(300.0, 900, 100, 450_000, 9.0)
    busy = writer_stats(buffer_size=8_500, buffer_inserted=20_000, buffer_removed=11_500, circuit=DOWN)
    names = _names(active_alerts(snapshot_of(busy), files, flaky, {}, False))
    assert names == ["CollectorDatabaseDown"]
    # Back up, but the circuit tripped within the window: the failures were the outage's.
    names = _names(active_alerts(snapshot_of(writer_stats()), files, flaky, {"trips": 1}, True))
    assert names == ["CollectorBackupFilesWaiting"]
