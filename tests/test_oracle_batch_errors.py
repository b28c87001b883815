"""One executemany reports at most 65 535 batch errors; python-oracledb raises DPY-4029 beyond.

A replay of a big file of duplicates is exactly that case: every row is a batch error. The
configuration refuses an Oracle batch size the driver cannot report on, the sink never sends more
rows than that in one call (so even a larger batch built by hand is written), and DPY-4029 is
classified, not left to "transient" and retried for ever.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import oracledb
import pytest

from collector.config import ConfigError, load_config
from collector.model import TagValue
from collector.sinks.base import ColumnSpec
from collector.sinks.oracle import OracleSink, ddl
from collector.sinks.oracle_errors import MAX_BATCH_ERRORS, Disposition, classify_exception
from collector.sinks.oracle_schema import layout_for
from tests.oracle_double import FakeOracle, driver_error

# Seconds of work in the double: 65 536-row calls, several of them.
pytestmark = pytest.mark.slow

DSN = "localhost:1521/FREEPDB1"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
ROWS = MAX_BATCH_ERRORS + 1


def batch(count: int) -> list[TagValue]:
    return [TagValue(f"T{i % 1000}", float(i), T0 + timedelta(seconds=i // 1000)) for i in range(count)]


@pytest.fixture(scope="module")
def full_db() -> FakeOracle:
    """A table that already holds every row of ``batch(ROWS)``."""
    db = FakeOracle()
    db.execute_ddl(ddl())
    sink = OracleSink(dsn=DSN, user="app", password="app-secret", driver=db, call_timeout_s=30)
    try:
        assert sink.write(batch(ROWS)).written == ROWS
    finally:
        sink.close()
    return db


def test_the_double_raises_dpy_4029_where_the_driver_would(full_db: FakeOracle) -> None:
    layout = layout_for("TAG_DATA", ColumnSpec())
    rows = [(v.tag_name, v.value, None, v.timestamp.replace(tzinfo=None), "GOOD") for v in batch(ROWS)]
    pool = full_db.create_pool(user="app", password="app-secret", dsn=DSN, min=1, max=1)
    conn = pool.acquire()
    try:
        cursor = conn.cursor()
        cursor.setinputsizes(100, oracledb.DB_TYPE_NUMBER, 4000, oracledb.DB_TYPE_TIMESTAMP, 20)
        cursor.executemany(layout.insert_sql, rows[:MAX_BATCH_ERRORS], batcherrors=True)
        assert len(cursor.getbatcherrors()) == MAX_BATCH_ERRORS  # at the cap: reported
        cursor.setinputsizes(100, oracledb.DB_TYPE_NUMBER, 4000, oracledb.DB_TYPE_TIMESTAMP, 20)
        with pytest.raises(oracledb.Error) as info:
            cursor.executemany(layout.insert_sql, rows, batcherrors=True)
        assert info.value.args[0].full_code == "DPY-4029"
    finally:
        pool.release(conn)


def test_a_batch_over_the_cap_is_sent_in_slices_and_every_duplicate_counted(full_db: FakeOracle) -> None:
    sink = OracleSink(dsn=DSN, user="app", password="app-secret", driver=full_db, call_timeout_s=30)
    calls = full_db.executemany_calls
    try:
        result = sink.write(batch(ROWS))
    finally:
        sink.close()
    assert (result.written, result.duplicates, result.rejected) == (0, ROWS, [])
    assert full_db.executemany_calls - calls == 2  # 65 535 rows, then one
    assert full_db.count() == ROWS


def test_dpy_4029_is_permanent_not_retried_for_ever() -> None:
    failure = classify_exception(driver_error(4029))
    assert failure.code == "DPY-4029"
    assert failure.disposition is Disposition.PERMANENT


def test_the_configuration_refuses_an_oracle_batch_the_driver_cannot_report_on(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(
        f"writer: {{batch_size: {ROWS}}}\n"
        "sink: {type: oracle, dsn: 'db:1521/FREEPDB1', user: app, password: secret}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={}, env_file=None)
    assert f"writer.batch_size ({ROWS}) exceeds 65535" in str(info.value)
    # Other databases have no such limit.
    path.write_text(f"writer: {{batch_size: {ROWS}}}\nsink: {{type: sqlite}}\n")
    assert load_config(path, environ={}, env_file=None).writer.batch_size == ROWS
