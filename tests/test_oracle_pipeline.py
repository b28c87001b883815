"""The whole service writing to Oracle (the double) through an outage: nothing is lost.

Zero data loss is shown by counting: every value the simulator generated (its ledger) is either a
row in the database or a row in a backup or rejected CSV file, exactly once.
"""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from collector.circuit import CircuitState
from collector.config import OracleSinkConfig, load_config
from collector.model import TagValue
from collector.retry import RetryPolicy
from collector.service import CollectorService
from collector.sinks import build_sink
from collector.sinks.oracle import OracleSink, ddl
from tests.oracle_double import FakeOracle
from tests.waiting import wait_until
from tests.writer_rig import WriterRig

CONFIG = """
source:  {{type: simulator, groups: 4, tags_per_group: 25, interval_s: 0.1, bad_ratio: 0.05, seed: 7,
          ledger: {ledger}}}
buffer:  {{max_size: 10000}}
writer:  {{batch_size: 200, flush_interval_s: 0.05, max_retries: 3, backoff_s: [0.05, 0.1, 0.2],
          workers: 2, probe_interval_s: 0.2, shutdown_timeout_s: 5}}
sink:    {{type: oracle, dsn: "localhost:1521/FREEPDB1", user: app, password: app-secret,
          call_timeout_s: 1, pool_wait_timeout_s: 1}}
backup:  {{dir: {backup}, idle_close_s: 0.2}}
api:     {{enabled: false}}
"""


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_an_outage_loses_nothing(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.csv"
    backup = tmp_path / "backup"
    config_path = tmp_path / "collector.yaml"
    config_path.write_text(CONFIG.format(ledger=ledger, backup=backup))
    config = load_config(config_path, environ={}, env_file=None)
    assert isinstance(config.sink, OracleSinkConfig)

    db = FakeOracle()
    db.execute_ddl(ddl())
    service = CollectorService(config, sink=build_sink(config.sink, oracle_driver=db))
    service.start()
    try:
        wait_until(lambda: db.count() > 300, 10, what="rows in the database")
        db.go_down()
        wait_until(lambda: service.writer.circuit.is_open, 10, what="the circuit to open")
        time.sleep(0.5)  # values keep arriving while the database is down
        db.come_up()
        wait_until(lambda: not service.writer.circuit.is_open, 10, what="the circuit to close")
        written_before = db.count()
        wait_until(lambda: db.count() > written_before + 300, 10, what="writing to resume")
    finally:
        report = service.stop()

    generated = read_csv(ledger)
    in_db = {
        (str(r["TAG_NAME"]), r["TIMESTAMP"].replace(tzinfo=UTC).isoformat(timespec="microseconds"))
        for r in db.rows()
    }  # type: ignore[union-attr]
    backed_up = [row for path in sorted(backup.glob("backup_*.csv")) for row in read_csv(path)]
    rejected = [row for path in sorted(backup.glob("rejected_*.csv")) for row in read_csv(path)]
    in_files = [(row["tag_name"], row["timestamp"]) for row in backed_up + rejected]

    assert backed_up, "the outage should have sent values to the backup CSV"
    assert len(in_db) + len(in_files) == len(generated)
    assert set(in_files).isdisjoint(in_db)
    assert in_db | set(in_files) == {(row["tag_name"], row["timestamp"]) for row in generated}

    # Every stored row holds the value and quality generated for its key, in the right column.
    expected = {(row["tag_name"], row["timestamp"]): row for row in generated}
    for row in db.rows():
        key = (str(row["TAG_NAME"]), row["TIMESTAMP"].replace(tzinfo=UTC).isoformat(timespec="microseconds"))  # type: ignore[union-attr]
        source = expected[key]
        assert row["QUALITY"] == source["quality"]
        if row["TAG_VALUE"] is not None:
            assert row["TAG_VALUE"] == Decimal(source["tag_value"])
            assert row["TAG_VALUE_TEXT"] is None
        else:
            assert (row["TAG_VALUE_TEXT"] or "") == source["tag_value"]

    snapshot = report.snapshot
    assert snapshot.balanced()
    assert snapshot.writer.written == len(in_db)
    assert snapshot.writer.backed_up == len(backed_up)
    assert snapshot.writer.buffer_overflow == 0
    assert snapshot.lost == 0


def test_a_missing_table_is_backed_up_and_writing_resumes_once_it_exists(tmp_path: Path) -> None:
    db = FakeOracle()  # no table yet: the operator has not run the DDL
    sink = OracleSink(dsn="localhost:1521/FREEPDB1", user="app", password="app-secret", driver=db)
    rig = WriterRig(
        tmp_path,
        sink,
        capacity=1000,
        batch_size=50,
        retry=RetryPolicy.of(3, [0.02]),
        probe_interval_s=0.1,
        backup_dir=tmp_path,
    )
    writer = rig.writer
    start = datetime(2026, 3, 1, tzinfo=UTC)
    first = [TagValue(f"T{i}", float(i), start) for i in range(120)]
    second = [TagValue(f"T{i}", float(i), start.replace(second=1)) for i in range(120)]
    rig.start()
    try:
        rig.buffer.put_many(first)
        wait_until(lambda: writer.stats().backed_up == len(first), 10)
        status = writer.circuit.status()
        assert status.state is CircuitState.OPEN and status.permanent
        assert "ORA-00942" in status.reason
        assert writer.stats().retries == 0  # a permanent error is not retried
        db.execute_ddl(ddl())  # the operator fixes the schema
        wait_until(lambda: not writer.circuit.is_open, 10, what="the probe to find the table")
        rig.buffer.put_many(second)
        wait_until(lambda: db.count() == len(second), 10)
    finally:
        rig.stop()
        sink.close()
    backed_up = [row for path in tmp_path.glob("backup_*.csv") for row in read_csv(path)]
    assert sorted(row["tag_name"] for row in backed_up) == sorted(v.tag_name for v in first)
    assert writer.stats().written == len(second)
