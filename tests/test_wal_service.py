"""The service with its write-ahead log: recovery at start, the identity with ``recovered``, the
status document and the metrics, and the preflight of the directories it writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from collector.cli import main
from collector.service import CollectorService
from collector.telemetry import Telemetry
from collector.telemetry.tracing import Tracing
from collector.telemetry.wal_metrics import wal_status
from collector.wal import WriteAheadLog
from tests.evidence import sqlite_keys
from tests.test_service import make_config
from tests.wal_support import ManualClock, crash, poll


def _killed_run(wal_dir: Path, polls: range, committed: list) -> None:
    """What a killed run leaves: a log holding ``polls``, some of whose values were committed."""
    wal = WriteAheadLog(wal_dir, clock=ManualClock())
    wal.open()
    for index in polls:
        wal.append(poll(index))
    crash(wal)
    db = sqlite3.connect(wal_dir.parent / "tags.db")
    db.executescript(
        "CREATE TABLE IF NOT EXISTS TAG_DATA (tag_name VARCHAR(100) NOT NULL, tag_value NUMERIC,"
        " tag_value_text TEXT, timestamp TIMESTAMP NOT NULL, quality VARCHAR(20) NOT NULL,"
        " PRIMARY KEY (tag_name, timestamp))"
    )
    db.close()
    sink_service = CollectorService(make_config(wal_dir.parent, wal={"durability": "off"}))
    sink_service.sink.write(committed)  # committed before the kill, acknowledgement never seen
    sink_service.sink.close()


def test_a_restart_writes_the_unfinished_values_first_and_accounts_for_them(tmp_path: Path) -> None:
    wal_dir = tmp_path / "wal"
    _killed_run(wal_dir, range(20), committed=poll(0) + poll(1))
    registry = CollectorRegistry()
    service = CollectorService(
        make_config(tmp_path), telemetry=Telemetry(registry=registry, tracing=Tracing(trace.NoOpTracer()))
    )
    service.start()
    try:
        service.intake.submit_values(poll(100))  # new data, after the recovered values
    finally:
        report = service.stop()
    snap = report.snapshot
    assert snap.recovered == 200 and snap.accepted == 10
    assert snap.writer.duplicate == 20  # the two polls committed before the kill
    assert snap.balanced()
    stored = sqlite_keys(tmp_path / "tags.db")
    expected = {(v.tag_name, v.timestamp) for i in [*range(20), 100] for v in poll(i)}
    assert set(stored) == expected and stored.total() == len(expected)
    assert sorted(p.name for p in wal_dir.glob("*.wal")) == []  # graceful stop: the log is empty
    assert registry.get_sample_value("collector_wal_values_total", {"outcome": "recovered"}) == 200
    assert registry.get_sample_value("collector_wal_writable") == 1
    # The identity as the dashboard reads it from /metrics.
    sample = registry.get_sample_value
    outcomes = ("written", "duplicate", "rejected", "backed_up", "overflow", "lost")
    settled = sum(sample("collector_values_total", {"outcome": o}) or 0 for o in outcomes)
    assert sample("collector_values_recovered_total") == 200
    assert sample("collector_values_accepted_total") + 200 == settled + sample(
        "collector_buffer_size"
    ) + sample("collector_values_in_flight")


def test_the_status_document_has_the_log_and_the_recovered_term(tmp_path: Path) -> None:
    _killed_run(tmp_path / "wal", range(3), committed=[])
    service = CollectorService(make_config(tmp_path))
    service.start()
    try:
        snap = service.snapshot()
    finally:
        service.stop()
    section = wal_status(snap.wal)
    assert section["enabled"] is True and section["durability"] == "interval"
    assert section["recovered_values"] == 30 and section["writable"] is True
    assert section["unfinished_values"] >= 0 and section["quarantine_files"] == 0
    assert wal_status(None) == {"enabled": False, "durability": "off"}


def test_check_config_and_run_refuse_a_directory_they_cannot_write(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = tmp_path / "collector.yaml"
    config.write_text(
        f"source: {{type: external}}\n"
        f"sink: {{type: sqlite, path: {tmp_path / 'tags.db'}}}\n"
        f"backup: {{dir: {blocker / 'backup'}}}\n"
        f"wal: {{dir: {blocker / 'wal'}}}\n"
        f"api: {{enabled: false}}\n"
    )
    env = tmp_path / "none.env"
    env.write_text("")
    assert main(["check-config", "--config", str(config), "--env-file", str(env)]) == 2
    err = capsys.readouterr().err
    assert "wal.dir: cannot write to" in err and "backup.dir: cannot write to" in err
    assert main(["run", "--config", str(config), "--env-file", str(env), "--duration", "1"]) == 2
    assert "wal.dir: cannot write to" in capsys.readouterr().err
