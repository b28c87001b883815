"""The status document's network sources: their section, and the alert a lost broker raises."""

from __future__ import annotations

from dataclasses import replace

from collector.api.sources import source_section
from collector.api.status import active_alerts
from collector.inventory import Inventory
from collector.sources.counters import SourceCounters, SourceState
from collector.telemetry.window import WindowSummary
from tests.telemetry_support import snapshot_of, writer_stats

WINDOW = WindowSummary(
    300.0, successful_writes=600, failed_writes=0, rows_written=300_000, duration_sum_s=6.0
)


def _mqtt(state: SourceState, error: str | None = None) -> SourceCounters:
    counters = SourceCounters("mqtt", endpoint="mqtt://broker:1883", subscriptions=["$share/c/plant/#"])
    counters.set_state(SourceState.CONNECTED)
    counters.set_state(state, error)
    return counters


def test_a_lost_broker_is_one_alert_not_also_a_stalled_intake() -> None:
    lost = _mqtt(SourceState.DISCONNECTED, "broker unreachable")
    snapshot = replace(snapshot_of(writer_stats()), sources=(lost.stats(),))
    alerts = active_alerts(snapshot, Inventory(()), WINDOW, {"accepted": 0}, True, history_s=300.0)
    assert [a.name for a in alerts] == ["CollectorSourceDisconnected"]
    assert "mqtt://broker:1883: broker unreachable" in alerts[0].summary

    connected = replace(snapshot, sources=(_mqtt(SourceState.CONNECTED).stats(),))
    alerts = active_alerts(connected, Inventory(()), WINDOW, {"accepted": 0}, True, history_s=300.0)
    assert [a.name for a in alerts] == ["CollectorIntakeStalled"]


def test_the_source_section_counts_and_states() -> None:
    counters = _mqtt(SourceState.DISCONNECTED, "disconnected: Unspecified error")
    counters.set_state(SourceState.CONNECTED)
    counters.message(polls=2, values=700, refused=3, redelivered=True)
    section = source_section("mqtt", [counters.stats()])
    (entry,) = section["inputs"]
    assert section["type"] == "mqtt"
    assert (entry["state"], entry["connects"], entry["disconnects"]) == ("connected", 2, 1)
    assert (entry["values"], entry["refused"], entry["malformed"], entry["redeliveries"]) == (700, 3, 1, 1)
    assert entry["last_error"] == "disconnected: Unspecified error"
    assert entry["subscriptions"] == ["$share/c/plant/#"]
