"""The whole pipeline in one process: simulator or DataQueue in, real SQLite and real CSV files out.

Every test here reconciles the simulator's ledger against the rows in the SQLite file and the rows
in the backup CSVs; the service's counters are checked against that evidence, not trusted.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.config import Config, load_config
from collector.model import PollingData
from collector.service import CollectorService, StartupError
from collector.sinks.base import PermanentSinkError
from collector.sinks.sqlite import SqliteSink
from collector.sources.simulator import Simulator
from tests.evidence import read_ledger, read_spool_rows, reconcile, spool_keys, sqlite_keys
from tests.fakes import SwitchableSink
from tests.waiting import wait_until


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "source": {"type": "external"},
        "sink": {"type": "sqlite", "path": str(tmp_path / "tags.db")},
        "backup": {"dir": str(tmp_path / "backup")},
        "api": {"enabled": False},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Config.model_validate(data)


def row_count(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM TAG_DATA").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def test_one_thousand_values_become_exactly_one_thousand_rows_and_the_first_arrive_quickly(tmp_path):
    config = make_config(tmp_path)
    service = CollectorService(config)
    service.start()
    ledger = tmp_path / "ledger.csv"
    sim = Simulator(
        service.data_queue, groups=10, tags_per_group=100, interval_s=1.0, cycles=1, ledger=ledger
    )
    sim.start()
    try:
        first_rows_after = wait_until(lambda: row_count(tmp_path / "tags.db") > 0)
        assert sim.wait(10)
    finally:
        sim.stop()
        report = service.stop()
    assert first_rows_after < 2.0, "US1-1: data appears in the table within 2 seconds"
    ledger_rows = read_ledger(ledger)
    db = sqlite_keys(tmp_path / "tags.db")
    assert len(ledger_rows) == 1_000
    assert set(db) == set(ledger_rows)
    assert db.total() == 1_000
    assert report.snapshot.balanced()
    assert report.snapshot.writer.written == 1_000


def test_stored_values_match_what_was_generated(tmp_path):
    config = make_config(tmp_path)
    service = CollectorService(config)
    service.start()
    ledger = tmp_path / "ledger.csv"
    sim = Simulator(
        service.data_queue,
        groups=2,
        tags_per_group=50,
        interval_s=0.05,
        cycles=4,
        ledger=ledger,
        bad_ratio=0.1,
    )
    sim.start()
    assert sim.wait(10)
    sim.stop()
    service.stop()
    conn = sqlite3.connect(tmp_path / "tags.db")
    stored = {
        (name, stamp): (number, text, quality)
        for name, number, text, stamp, quality in conn.execute(
            "SELECT tag_name, tag_value, tag_value_text, timestamp, quality FROM TAG_DATA"
        )
    }
    conn.close()
    rows = read_ledger(ledger)
    assert len(stored) == len(rows) == 400
    for (name, stamp), row in rows.items():
        number, text, quality = stored[(name, stamp.strftime("%Y-%m-%d %H:%M:%S.%f"))]
        assert quality == row["quality"]
        generated = row["tag_value"]
        if text is not None:
            assert text == generated, (name, row)
        elif number is None:
            assert generated == "", (name, row)
        else:  # NUMERIC keeps the number; 5.0 may come back as 5, the same value
            assert float(number) == float(generated), (name, row)


@pytest.mark.slow
def test_outage_of_ten_seconds_at_3491_values_per_second_loses_nothing(tmp_path):
    config = make_config(
        tmp_path,
        source={
            "type": "simulator",
            "tags": 3491,
            "groups": 10,
            "interval_s": 1.0,
            "ledger": str(tmp_path / "ledger.csv"),
        },
        writer={"probe_interval_s": 1.0},
    )
    sink = SwitchableSink(SqliteSink(tmp_path / "tags.db"))
    service = CollectorService(config, sink=sink)
    service.start()
    try:
        wait_until(lambda: row_count(tmp_path / "tags.db") > 3_000)
        sink.down.set()
        time.sleep(10)
        opened = service.writer.stats().circuit
        sink.down.clear()
        back = time.monotonic()
        wait_until(lambda: service.writer.stats().circuit.state == "closed", timeout_s=10)
        reconnected_after = time.monotonic() - back
        before = row_count(tmp_path / "tags.db")
        wait_until(lambda: row_count(tmp_path / "tags.db") > before + 3_000)
    finally:
        report = service.stop()
    assert opened.state == "open" and opened.trips == 1
    assert reconnected_after < config.writer.probe_interval_s + 1.5
    ledger = read_ledger(tmp_path / "ledger.csv")
    db = sqlite_keys(tmp_path / "tags.db")
    backups = spool_keys([tmp_path / "backup"])
    found = reconcile(ledger, db, backups)
    assert found.missing == set() and found.unexpected == set()
    assert found.database_duplicates == 0
    assert found.in_backup_only > 20_000  # most of the outage went to backup...
    assert found.in_database + found.in_backup_only == found.generated
    snap = report.snapshot
    assert snap.balanced()
    assert snap.writer.buffer_overflow == 0 and snap.lost == 0
    assert snap.writer.backed_up == backups.total()
    assert snap.writer.written == db.total()


def test_invalid_values_from_the_polling_engine_are_rejected_with_reasons(tmp_path):
    service = CollectorService(make_config(tmp_path))
    service.start()
    now = datetime.now(UTC)
    service.data_queue.put(PollingData("g", now, {"ok": 1.0, "": 2.0, "x" * 150: 3.0, "obj": object()}))
    service.data_queue.put(PollingData("g", "2026-01-01", {"late": 1.0}))  # type: ignore[arg-type]
    report = service.stop()
    rows = read_spool_rows([tmp_path / "backup"], "rejected")
    assert sorted(r["reason"] for r in rows) == sorted(
        [
            "tag name is empty",
            "tag name is 150 characters, the limit is 100",
            "unsupported value type object",
            "timestamp must be a datetime, got str",
        ]
    )
    assert all(r["error_code"] == "INVALID" for r in rows)
    assert row_count(tmp_path / "tags.db") == 1
    assert report.snapshot.rejected == 4 and report.snapshot.balanced()


def test_database_down_at_start_is_an_outage_not_a_crash(tmp_path):
    blocker = tmp_path / "disk-not-mounted"
    blocker.write_text("")
    config = make_config(tmp_path, sink={"path": str(blocker / "tags.db")}, writer={"probe_interval_s": 0.2})
    service = CollectorService(config)
    service.start()
    assert service.writer.stats().circuit.state == "open"
    now = datetime.now(UTC)
    service.data_queue.put(PollingData("g", now, {f"T{i}": i for i in range(300)}))
    wait_until(lambda: service.writer.stats().backed_up == 300)
    report = service.stop()
    assert spool_keys([tmp_path / "backup"]).total() == 300
    assert report.snapshot.balanced()


def test_permanent_error_at_start_fails_with_a_clear_message(tmp_path):
    class NoTable(SqliteSink):
        def ping(self) -> None:
            raise PermanentSinkError("table TAG_DATA does not exist", code="NO_TABLE")

    service = CollectorService(make_config(tmp_path), sink=NoTable(tmp_path / "x.db"))
    with pytest.raises(StartupError, match="NO_TABLE: table TAG_DATA does not exist"):
        service.start()


def test_backups_that_cannot_be_written_anywhere_are_counted_and_logged_as_lost(tmp_path, caplog):
    blocker = tmp_path / "full-disk"
    blocker.write_text("")
    config = make_config(
        tmp_path,
        backup={"dir": str(blocker / "backup"), "fallback_dir": str(blocker / "fallback")},
        writer={"max_retries": 0},
    )
    sink = SwitchableSink(SqliteSink(tmp_path / "tags.db"))
    sink.down.set()
    service = CollectorService(config, sink=sink)
    service.start()
    now = datetime.now(UTC)
    for second in range(5):
        service.data_queue.put(PollingData("g", now.replace(second=second), {f"T{i}": i for i in range(100)}))
    with caplog.at_level(logging.ERROR, logger="collector"):
        wait_until(lambda: service.writer.stats().lost == 500)
    assert service.writer.threads and all(t.is_alive() for t in service.writer.threads)
    report = service.stop()
    assert report.snapshot.lost == 500 and report.snapshot.balanced()
    assert "values lost" in caplog.text and "cannot write backup file" in caplog.text
    assert row_count(tmp_path / "tags.db") == 0


def test_stop_is_safe_to_call_twice_and_leaves_no_thread_behind(tmp_path):
    config = make_config(
        tmp_path, source={"type": "simulator", "groups": 2, "tags_per_group": 10, "interval_s": 0.1}
    )
    before = set(threading.enumerate())
    service = CollectorService(config)
    service.start()
    time.sleep(0.3)
    first = service.stop()
    assert service.stop() is first
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leftover == []


def test_the_external_data_queue_is_never_blocked(tmp_path):
    data_queue: queue.Queue = queue.Queue()
    service = CollectorService(make_config(tmp_path), data_queue=data_queue)
    service.start()
    started = time.perf_counter()
    for i in range(2_000):
        data_queue.put(PollingData("g", datetime(2026, 1, 1, 0, 0, i % 60, i, tzinfo=UTC), {f"T{i}": i}))
    put_time = time.perf_counter() - started
    wait_until(lambda: service.writer.stats().written == 2_000)
    service.stop()
    assert row_count(tmp_path / "tags.db") == 2_000
    assert put_time < 5.0  # only a sanity bound: 2 000 unbounded-queue puts never wait on the writer


def test_load_config_feeds_the_service(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(
        environ={"COLLECTOR_SOURCE__TYPE": "external", "COLLECTOR_API__ENABLED": "false"}, env_file=None
    )
    service = CollectorService(config)
    assert service.simulator is None
    assert service.buffer.capacity == 10_000 and service.buffer.batch_size == 500
    service.sink.close()


@pytest.mark.slow
def test_overflow_is_logged_with_its_figures_at_a_limited_rate(tmp_path, caplog):
    from tests.fakes import BlockingSink

    config = make_config(
        tmp_path, buffer={"max_size": 1_000, "spill_ratio": None, "overflow_log_interval_s": 60}
    )
    sink = BlockingSink()
    service = CollectorService(config, sink=sink)
    with caplog.at_level(logging.WARNING, logger="collector"):
        service.start()
        now = datetime.now(UTC)
        for second in range(30):
            service.data_queue.put(
                PollingData("g", now.replace(microsecond=second), {f"T{i}": i for i in range(100)})
            )
        wait_until(lambda: service.buffer.stats().overflow >= 1_000)
        time.sleep(1.5)  # the monitor checks once a second
        for second in range(30, 40):
            service.data_queue.put(
                PollingData("g", now.replace(microsecond=second), {f"T{i}": i for i in range(100)})
            )
        time.sleep(1.5)
        sink.release.set()
        service.stop()
    warnings = [r for r in caplog.records if getattr(r, "collector_event", "") == "buffer_overflow"]
    assert len(warnings) == 1, "rate limited to one warning per interval"
    fields = warnings[0].collector_fields  # type: ignore[attr-defined]
    assert fields["capacity"] == 1_000 and fields["overflow_total"] >= 1_000
    assert fields["overflow_ratio"] > 0


def test_an_outage_is_told_in_the_log_from_first_failure_to_recovery(tmp_path, caplog):
    config = make_config(tmp_path, writer={"probe_interval_s": 0.3, "backoff_s": [0.05], "max_retries": 1})
    sink = SwitchableSink(SqliteSink(tmp_path / "tags.db"))
    service = CollectorService(config, sink=sink)
    with caplog.at_level(logging.INFO, logger="collector"):
        service.start()
        sink.down.set()
        now = datetime.now(UTC)
        service.data_queue.put(PollingData("g", now, {f"T{i}": i for i in range(600)}))
        wait_until(lambda: service.writer.stats().circuit.state == "open")
        sink.down.clear()
        wait_until(lambda: service.writer.stats().circuit.state == "closed")
        service.stop()
    events = [getattr(r, "collector_event", "") for r in caplog.records]
    for expected in (
        "write_failed",
        "write_retry",
        "circuit_opened",
        "backup_file_created",
        "circuit_closed",
        "shutdown_started",
        "shutdown_complete",
    ):
        assert expected in events, expected
    assert events.index("write_failed") < events.index("circuit_opened") < events.index("circuit_closed")
