"""The driver double behaves like python-oracledb where the Oracle sink could go wrong.

These tests pin the double's behaviour with plain driver calls (no sink), so that a sink test that
passes against it means something: each trap the sink avoids is shown here to be a trap.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import oracledb
import pytest

from collector.sinks.oracle import ddl
from tests.oracle_double import FakeOracle, WouldHangError, instance_shutting_down

STAMP = datetime(2026, 3, 1, 8, 30, 15, 123456)
INSERT = (
    'INSERT INTO "TAG_DATA" ("TAG_NAME", "TAG_VALUE", "TAG_VALUE_TEXT", "TIMESTAMP", "QUALITY") '
    "VALUES (:1, :2, :3, :4, :5)"
)


@pytest.fixture
def db() -> FakeOracle:
    fake = FakeOracle()
    fake.execute_ddl(ddl())
    return fake


def pool_of(db: FakeOracle, **overrides: object) -> object:
    kwargs: dict[str, object] = {
        "user": "app",
        "password": "app-secret",
        "dsn": "localhost:1521/FREEPDB1",
        "min": 2,
        "max": 2,
        "increment": 1,
        "getmode": oracledb.POOL_GETMODE_TIMEDWAIT,
        "wait_timeout": 50,
    }
    kwargs.update(overrides)
    return db.create_pool(**kwargs)


def error_of(info: pytest.ExceptionInfo[oracledb.Error]) -> object:
    return info.value.args[0]


def test_create_pool_takes_only_the_real_keyword_arguments(db: FakeOracle) -> None:
    with pytest.raises(TypeError):
        pool_of(db, connect_timeout=5)  # python-oracledb calls it tcp_connect_timeout


def test_a_datetime_without_input_sizes_binds_as_date_and_loses_microseconds(db: FakeOracle) -> None:
    pool = pool_of(db)
    conn = pool.acquire()  # type: ignore[attr-defined]
    cursor = conn.cursor()
    cursor.executemany(INSERT, [("T1", 1, None, STAMP, "GOOD")])
    conn.commit()
    assert db.bind_types[-1][3] == "DATE"
    assert db.rows()[0]["TIMESTAMP"] == STAMP.replace(microsecond=0)


def test_declared_timestamp_keeps_microseconds_and_ignores_tzinfo(db: FakeOracle) -> None:
    pool = pool_of(db)
    conn = pool.acquire()  # type: ignore[attr-defined]
    cursor = conn.cursor()
    cursor.setinputsizes(None, None, None, oracledb.DB_TYPE_TIMESTAMP, None)
    tokyo = timezone(timedelta(hours=9))
    cursor.executemany(INSERT, [("T1", 1, None, STAMP.replace(tzinfo=tokyo), "GOOD")])
    conn.commit()
    assert db.bind_types[-1][3] == "TIMESTAMP"
    # Thin mode sends the wall-clock fields: the +09:00 offset is silently dropped.
    assert db.rows()[0]["TIMESTAMP"] == STAMP


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (math.nan, "DPY-4004"),
        (math.inf, "DPY-4004"),
        (1e200, "DPY-4003"),
        (1e-200, "DPY-4003"),
        (10**41 + 1, "DPY-4003"),  # 42 significant digits
    ],
)
def test_numbers_number_cannot_hold_fail_the_whole_call_even_with_batch_errors(
    db: FakeOracle, value: float, code: str
) -> None:
    conn = pool_of(db).acquire()  # type: ignore[attr-defined]
    cursor = conn.cursor()
    rows = [("GOOD1", 1.0, None, STAMP, "GOOD"), ("BAD", value, None, STAMP, "GOOD")]
    with pytest.raises(oracledb.DatabaseError) as info:
        cursor.executemany(INSERT, rows, batcherrors=True)
    assert error_of(info).full_code == code  # type: ignore[attr-defined]
    conn.commit()
    assert db.count() == 0  # nothing was sent, not even the good row


def test_mixing_numbers_and_strings_in_one_bind_column_fails_the_call(db: FakeOracle) -> None:
    conn = pool_of(db).acquire()  # type: ignore[attr-defined]
    cursor = conn.cursor()
    rows = [("A", 1.5, None, STAMP, "GOOD"), ("B", "RUN", None, STAMP, "GOOD")]
    with pytest.raises(oracledb.NotSupportedError) as info:
        cursor.executemany(INSERT, rows, batcherrors=True)
    assert error_of(info).full_code == "DPY-3013"  # type: ignore[attr-defined]


def test_batch_errors_report_offsets_and_the_rest_is_committed(db: FakeOracle) -> None:
    conn = pool_of(db).acquire()  # type: ignore[attr-defined]
    cursor = conn.cursor()
    cursor.setinputsizes(100, oracledb.DB_TYPE_NUMBER, 4000, oracledb.DB_TYPE_TIMESTAMP, 20)
    rows = [
        ("A", 1, None, STAMP, "GOOD"),
        ("A", 2, None, STAMP, "GOOD"),  # same key: ORA-00001
        ("B", None, "x" * 4001, STAMP, "GOOD"),  # ORA-12899
        ("C", None, None, STAMP, "MAYBE"),  # ORA-02290
        ("D", None, None, STAMP, None),  # ORA-01400
        ("E", Decimal("2.5"), None, STAMP, "BAD"),
    ]
    cursor.executemany(INSERT, rows, batcherrors=True)
    errors = {e.offset: e.full_code for e in cursor.getbatcherrors()}
    assert errors == {1: "ORA-00001", 2: "ORA-12899", 3: "ORA-02290", 4: "ORA-01400"}
    assert cursor.rowcount == 2
    assert db.count() == 0  # not committed yet: batch errors leave the transaction open
    conn.commit()
    assert sorted(r["TAG_NAME"] for r in db.rows()) == ["A", "E"]


def test_oracle_stores_an_empty_string_as_null(db: FakeOracle) -> None:
    conn = pool_of(db).acquire()  # type: ignore[attr-defined]
    conn.cursor().executemany(INSERT, [("A", None, "", STAMP, "GOOD")])
    conn.commit()
    assert db.rows()[0]["TAG_VALUE_TEXT"] is None


def test_release_rolls_back_and_another_session_sees_only_commits(db: FakeOracle) -> None:
    pool = pool_of(db)
    conn = pool.acquire()  # type: ignore[attr-defined]
    conn.cursor().executemany(INSERT, [("A", 1, None, STAMP, "GOOD")])
    pool.release(conn)  # type: ignore[attr-defined]
    assert db.count() == 0
    with pytest.raises(oracledb.InterfaceError):
        conn.commit()  # a released connection is unusable (DPY-1001)


def test_down_database_refuses_connections_and_breaks_open_sessions(db: FakeOracle) -> None:
    pool = pool_of(db)
    conn = pool.acquire()  # type: ignore[attr-defined]
    db.go_down()
    with pytest.raises(oracledb.DatabaseError) as info:
        conn.ping()
    assert error_of(info).full_code == "DPY-4011"  # type: ignore[attr-defined]
    assert error_of(info).is_session_dead  # type: ignore[attr-defined]
    pool.release(conn)  # type: ignore[attr-defined]
    with pytest.raises(oracledb.OperationalError) as info2:
        pool.acquire()  # type: ignore[attr-defined]
    assert error_of(info2).full_code == "DPY-6005"  # type: ignore[attr-defined]
    db.come_up()
    pool.acquire().ping()  # type: ignore[attr-defined]


def test_killed_sessions_fail_once_with_ora_00028_inside_dpy_4011(db: FakeOracle) -> None:
    pool = pool_of(db)
    conn = pool.acquire()  # type: ignore[attr-defined]
    assert db.kill_sessions() == 1
    with pytest.raises(oracledb.DatabaseError) as info:
        conn.cursor().executemany(INSERT, [("A", 1, None, STAMP, "GOOD")])
    err = error_of(info)
    assert (err.full_code, err.code) == ("DPY-4011", 28)  # type: ignore[attr-defined]


def test_injected_errors_come_from_the_driver_and_can_land_after_the_commit(db: FakeOracle) -> None:
    conn = pool_of(db).acquire()  # type: ignore[attr-defined]
    db.inject("commit", instance_shutting_down, after=True)
    conn.cursor().executemany(INSERT, [("A", 1, None, STAMP, "GOOD")])
    with pytest.raises(oracledb.DatabaseError) as info:
        conn.commit()
    assert error_of(info).code == 1089  # type: ignore[attr-defined]
    assert db.count() == 1  # the commit happened; only its acknowledgement was lost


def test_a_hanging_call_ends_at_the_call_timeout_and_without_one_the_test_fails(db: FakeOracle) -> None:
    conn = pool_of(db).acquire()  # type: ignore[attr-defined]
    db.hang_s = 3600
    with pytest.raises(WouldHangError):
        conn.ping()
    conn.call_timeout = 20
    with pytest.raises(oracledb.DatabaseError) as info:
        conn.ping()
    assert error_of(info).full_code == "DPY-4024"  # type: ignore[attr-defined]


def test_the_pool_waits_for_a_free_connection_then_times_out(db: FakeOracle) -> None:
    pool = pool_of(db, min=1, max=1, wait_timeout=30)
    held = pool.acquire()  # type: ignore[attr-defined]
    with pytest.raises(oracledb.DatabaseError) as info:
        pool.acquire()  # type: ignore[attr-defined]
    assert error_of(info).full_code == "DPY-4005"  # type: ignore[attr-defined]
    released = threading.Timer(0.01, pool.release, args=(held,))  # type: ignore[attr-defined]
    released.start()
    try:
        again = pool.acquire()  # type: ignore[attr-defined]
    finally:
        released.join()
    assert again is not None


def test_bad_credentials_and_unknown_service(db: FakeOracle) -> None:
    with pytest.raises(oracledb.DatabaseError) as info:
        pool_of(db, password="wrong").acquire()  # type: ignore[attr-defined]
    assert error_of(info).full_code == "ORA-01017"  # type: ignore[attr-defined]
    with pytest.raises(oracledb.OperationalError) as info2:
        pool_of(db, dsn="localhost:1521/NOPE").acquire()  # type: ignore[attr-defined]
    assert error_of(info2).full_code == "DPY-6001"  # type: ignore[attr-defined]


def test_missing_table_and_column_fail_at_parse(db: FakeOracle) -> None:
    conn = pool_of(db).acquire()  # type: ignore[attr-defined]
    cursor = conn.cursor()
    with pytest.raises(oracledb.DatabaseError) as info:
        cursor.parse(INSERT.replace('"TAG_DATA"', '"OTHER"'))
    assert error_of(info).full_code == "ORA-00942"  # type: ignore[attr-defined]
    db.drop_column("TAG_DATA", "TAG_VALUE_TEXT")
    with pytest.raises(oracledb.DatabaseError) as info2:
        cursor.parse(INSERT)
    assert error_of(info2).full_code == "ORA-00904"  # type: ignore[attr-defined]


def test_dictionary_rows_look_like_oracles(db: FakeOracle) -> None:
    conn = pool_of(db).acquire()  # type: ignore[attr-defined]
    cursor = conn.cursor()
    cursor.execute(
        "SELECT column_name, data_type, data_scale, nullable FROM user_tab_columns "
        "WHERE table_name = :table_name ORDER BY column_id",
        {"table_name": "TAG_DATA"},
    )
    rows = cursor.fetchall()
    assert rows[3] == ("TIMESTAMP", "TIMESTAMP(6)", 6, "N")
    assert rows[1] == ("TAG_VALUE", "NUMBER", None, "Y")
