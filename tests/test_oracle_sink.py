"""The Oracle sink against the driver double: batches, outcomes per row, binding traps, failures."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import oracledb
import pytest

from collector.config import OracleSinkConfig, load_config
from collector.model import Quality, TagValue
from collector.sinks import Sink, build_sink
from collector.sinks.base import PermanentSinkError, SinkError, TransientSinkError
from collector.sinks.oracle import OracleSink, ddl
from collector.sinks.oracle_schema import ValueMode
from tests.oracle_double import FakeOracle, connection_lost, connection_refused

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


def values(count: int, *, start: int = 0, stamp: datetime = T0) -> list[TagValue]:
    return [TagValue(f"LINE1.FIC{i:04d}.PV", float(i) + 0.25, stamp) for i in range(start, start + count)]


@pytest.fixture
def db() -> FakeOracle:
    fake = FakeOracle()
    fake.execute_ddl(ddl())
    return fake


@pytest.fixture
def make_sink(db: FakeOracle) -> Iterator[Callable[..., OracleSink]]:
    made: list[OracleSink] = []

    def make(**overrides: object) -> OracleSink:
        kwargs: dict[str, object] = {
            "dsn": "localhost:1521/FREEPDB1",
            "user": "app",
            "password": "app-secret",
            "driver": db,
            "call_timeout_s": 0.5,
            "pool_wait_timeout_s": 0.5,
        }
        kwargs.update(overrides)
        sink = OracleSink(**kwargs)  # type: ignore[arg-type]
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


@pytest.fixture
def sink(make_sink: Callable[..., OracleSink]) -> OracleSink:
    return make_sink()


def stored(db: FakeOracle) -> dict[str, dict[str, object]]:
    return {str(row["TAG_NAME"]): row for row in db.rows()}


# ---------------------------------------------------------------------- configuration and pool


def test_the_factory_makes_a_thin_pool_of_five_with_deadlines(db: FakeOracle) -> None:
    config = load_config(
        None,
        environ={
            "ORACLE_HOST": "localhost",
            "ORACLE_SERVICE_NAME": "FREEPDB1",
            "ORACLE_USER": "app",
            "ORACLE_PASSWORD": "app-secret",
        },
        env_file=None,
    )
    assert isinstance(config.sink, OracleSinkConfig)
    sink = build_sink(config.sink, oracle_driver=db)
    try:
        assert isinstance(sink, Sink)
        assert sink.system_name == "oracle.db"
        assert db.pools == []  # nothing is opened before the first use
        sink.ping()
        (pool,) = db.pools
        assert pool.kwargs["dsn"] == "localhost:1521/FREEPDB1"
        assert (pool.kwargs["min"], pool.kwargs["max"]) == (5, 5)  # FR-007: a fixed pool of 5
        assert pool.kwargs["getmode"] == oracledb.POOL_GETMODE_TIMEDWAIT
        assert pool.kwargs["wait_timeout"] == 5000
        assert pool.kwargs["tcp_connect_timeout"] == 5.0  # the driver's default is 20 s
        # Thin mode: the sink never loads the Oracle Client libraries.
        assert oracledb.is_thin_mode()
    finally:
        sink.close()


def test_every_acquired_connection_gets_the_call_timeout(
    db: FakeOracle, make_sink: Callable[..., OracleSink]
) -> None:
    sink = make_sink(call_timeout_s=7.5)
    sink.ping()
    sink.write(values(3))
    sink.write(values(3, start=3))
    # Set on each acquire: some driver versions reset it after an idle ping.
    assert db.call_timeouts == [7500, 7500, 7500]


def test_the_sink_is_built_while_the_database_is_down_and_works_once_it_is_back(
    db: FakeOracle, make_sink: Callable[..., OracleSink]
) -> None:
    db.go_down()
    sink = make_sink()
    with pytest.raises(TransientSinkError) as info:
        sink.ping()
    assert info.value.code == "DPY-6005"
    with pytest.raises(TransientSinkError):
        sink.write(values(2))
    db.come_up()
    sink.ping()
    assert sink.write(values(2)).written == 2
    assert db.count() == 2


def test_an_instance_still_starting_is_transient(db: FakeOracle, sink: OracleSink) -> None:
    db.starting = True
    with pytest.raises(TransientSinkError) as info:
        sink.ping()
    assert info.value.code == "ORA-01033"
    db.come_up()
    sink.ping()


# ---------------------------------------------------------------------- batches and outcomes


def test_a_batch_is_one_executemany_and_one_commit(db: FakeOracle, sink: OracleSink) -> None:
    batch = values(500)
    result = sink.write(batch)
    assert (result.written, result.duplicates, result.rejected) == (500, 0, [])
    assert db.executemany_calls == 1
    assert db.commits == 1
    rows = stored(db)
    assert len(rows) == 500
    sample = rows["LINE1.FIC0042.PV"]
    assert sample["TAG_VALUE"] == Decimal("42.25")
    assert sample["TIMESTAMP"] == datetime(2026, 3, 1, 8, 30, 15, 123456)
    assert sample["QUALITY"] == "GOOD"


def test_duplicates_are_counted_and_skipped(db: FakeOracle, sink: OracleSink) -> None:
    first = values(10)
    assert sink.write(first).written == 10
    again = first[:4] + values(3, start=100)
    result = sink.write(again)
    assert (result.written, result.duplicates, result.rejected) == (3, 4, [])
    # Inside one batch too: the second reading of a key is the duplicate.
    twice = [TagValue("X", 1.0, T0), TagValue("X", 2.0, T0)]
    result = sink.write(twice)
    assert (result.written, result.duplicates) == (1, 1)
    assert db.count() == 14
    assert stored(db)["X"]["TAG_VALUE"] == Decimal(1)


def test_rows_the_database_refuses_are_rejected_with_their_code_and_the_rest_is_committed(
    make_sink: Callable[..., OracleSink],
) -> None:
    db = FakeOracle()
    db.execute_ddl(ddl().replace('"TAG_VALUE"      NUMBER,', '"TAG_VALUE"      NUMBER(5,2),'))
    sink = make_sink(driver=db)
    batch = [
        TagValue("A", 1.5, T0),
        TagValue("B", 12345.6, T0),  # NUMBER(5,2) holds at most 999.99: ORA-01438
        TagValue("C", "x" * 4000, T0),
        TagValue("D", 2.5, T0, "BAD"),
    ]
    db.fail_rows(lambda row: row["TAG_NAME"] == "C", 12899, "value too large for column (actual: 4001)")
    result = sink.write(batch)
    assert result.written == 2
    assert [(e.index, e.code) for e in result.rejected] == [(1, "ORA-01438"), (2, "ORA-12899")]
    assert "precision" in result.rejected[0].message
    assert sorted(stored(db)) == ["A", "D"]


def test_rejections_before_binding_keep_their_batch_positions(
    db: FakeOracle, make_sink: Callable[..., OracleSink]
) -> None:
    db2 = FakeOracle()
    db2.execute_ddl(ddl().replace('    "TAG_VALUE_TEXT" VARCHAR2(4000 CHAR),\n', ""))
    sink = make_sink(driver=db2)
    batch = [
        TagValue("A", "text needs a text column", T0),
        TagValue("A", 1.0, T0),
        TagValue("B", math.nan, T0),
        TagValue("A", 2.0, T0),  # the same key as index 1: a duplicate from the database
    ]
    result = sink.write(batch)
    assert sink.layout is not None and sink.layout.mode is ValueMode.NUMBER_ONLY
    assert [(e.index, e.code) for e in result.rejected] == [(0, "NO_TEXT_COLUMN"), (2, "NO_TEXT_COLUMN")]
    assert (result.written, result.duplicates) == (1, 1)
    assert result.total == len(batch)


def test_a_text_only_table_gets_every_value_as_its_exact_text(make_sink: Callable[..., OracleSink]) -> None:
    db = FakeOracle()
    db.execute_ddl(
        ddl()
        .replace('"TAG_VALUE"      NUMBER,', '"TAG_VALUE"      VARCHAR2(4000 CHAR),')
        .replace('    "TAG_VALUE_TEXT" VARCHAR2(4000 CHAR),\n', "")
    )
    sink = make_sink(driver=db)
    batch = [
        TagValue("F", 0.1, T0),
        TagValue("I", 10**30, T0),
        TagValue("B", True, T0),
        TagValue("S", "RUN", T0),
    ]
    assert sink.write(batch).written == 4
    assert sink.layout is not None and sink.layout.mode is ValueMode.TEXT_ONLY
    assert {k: v["TAG_VALUE"] for k, v in stored(db).items()} == {
        "F": "0.1",
        "I": str(10**30),
        "B": "1",
        "S": "RUN",
    }
    assert db.bind_types[-1][1] == "VARCHAR"


# ---------------------------------------------------------------------- the binding traps


def test_microseconds_survive_because_timestamps_bind_as_timestamp(db: FakeOracle, sink: OracleSink) -> None:
    # Two readings of one tag within the same second: bound as DATE they would collide on the key.
    a = TagValue("T", 1.0, T0.replace(microsecond=1))
    b = TagValue("T", 2.0, T0.replace(microsecond=999_999))
    result = sink.write([a, b])
    assert (result.written, result.duplicates) == (2, 0)
    assert db.bind_types[-1][3] == "TIMESTAMP"
    assert sorted(r["TIMESTAMP"].microsecond for r in db.rows()) == [1, 999_999]  # type: ignore[union-attr]


def test_timestamps_are_stored_as_utc_whatever_zone_they_came_in(db: FakeOracle, sink: OracleSink) -> None:
    tokyo = timezone(timedelta(hours=9))
    local = datetime(2026, 3, 1, 17, 30, 15, 123456, tzinfo=tokyo)  # = 08:30:15.123456 UTC
    sink.write([TagValue("T", 1.0, local)])
    assert db.rows()[0]["TIMESTAMP"] == datetime(2026, 3, 1, 8, 30, 15, 123456)


def test_numbers_number_cannot_hold_go_to_text_and_never_fail_the_batch(
    db: FakeOracle, sink: OracleSink
) -> None:
    batch = [
        TagValue("NAN", math.nan, T0),
        TagValue("INF", math.inf, T0),
        TagValue("NINF", -math.inf, T0),
        TagValue("HUGE", 1e200, T0),
        TagValue("TINY", 1e-200, T0),
        TagValue("WIDE", 10**40 + 1, T0),
        TagValue("OK", 3.5, T0),
    ]
    result = sink.write(batch)
    assert (result.written, result.rejected) == (7, [])
    rows = stored(db)
    assert {k: rows[k]["TAG_VALUE_TEXT"] for k in rows if k != "OK"} == {
        "NAN": "nan",
        "INF": "inf",
        "NINF": "-inf",
        "HUGE": "1e+200",
        "TINY": "1e-200",
        "WIDE": str(10**40 + 1),
    }
    assert all(rows[k]["TAG_VALUE"] is None for k in rows if k != "OK")
    assert rows["OK"]["TAG_VALUE"] == Decimal("3.5")


def test_numbers_and_strings_in_one_batch_bind_to_their_own_columns(db: FakeOracle, sink: OracleSink) -> None:
    # Text first, then numbers, then None: one bind column per kind, each declared, never mixed.
    batch = [
        TagValue("S", "RUN", T0),
        TagValue("N", 7, T0),
        TagValue("F", 2.5, T0),
        TagValue("Z", None, T0, Quality.BAD),
        TagValue("B", False, T0),
    ]
    assert sink.write(batch).written == 5
    assert db.bind_types[-1] == ("VARCHAR", "NUMBER", "VARCHAR", "TIMESTAMP", "VARCHAR")
    rows = stored(db)
    assert (rows["S"]["TAG_VALUE"], rows["S"]["TAG_VALUE_TEXT"]) == (None, "RUN")
    assert (rows["N"]["TAG_VALUE"], rows["F"]["TAG_VALUE"], rows["B"]["TAG_VALUE"]) == (
        Decimal(7),
        Decimal("2.5"),
        Decimal(0),
    )
    assert (rows["Z"]["TAG_VALUE"], rows["Z"]["TAG_VALUE_TEXT"], rows["Z"]["QUALITY"]) == (None, None, "BAD")


def test_a_batch_whose_first_values_are_none_still_binds_numbers_as_numbers(
    db: FakeOracle, sink: OracleSink
) -> None:
    batch = [TagValue(f"N{i}", None, T0, Quality.BAD) for i in range(3)] + [TagValue("V", 12, T0)]
    assert sink.write(batch).written == 4
    assert db.bind_types[-1][1] == "NUMBER"


# ---------------------------------------------------------------------- failures


def test_missing_table_column_and_credentials_are_permanent_and_named(
    db: FakeOracle, make_sink: Callable[..., OracleSink]
) -> None:
    with pytest.raises(PermanentSinkError, match=r"table OTHER does not exist") as info:
        make_sink(table="OTHER").ping()
    assert info.value.code == "ORA-00942"
    db.drop_column("TAG_DATA", "QUALITY")
    with pytest.raises(PermanentSinkError, match="has no column QUALITY"):
        make_sink().ping()
    with pytest.raises(PermanentSinkError) as info3:
        make_sink(password="wrong").ping()
    assert info3.value.code == "ORA-01017"


def test_a_probe_finds_the_schema_fixed_and_writing_resumes(db: FakeOracle, sink: OracleSink) -> None:
    sink.ping()
    db.execute_ddl('DROP TABLE "TAG_DATA"')
    with pytest.raises(PermanentSinkError) as info:
        sink.write(values(2))  # the cached layout is stale: the INSERT itself fails
    assert info.value.code == "ORA-00942"
    assert sink.layout is None  # the next probe reads the dictionary again
    with pytest.raises(PermanentSinkError):
        sink.ping()
    db.execute_ddl(ddl())
    sink.ping()
    assert sink.write(values(2)).written == 2


def test_a_killed_session_is_dropped_and_the_batch_goes_through_on_a_fresh_one(
    db: FakeOracle, sink: OracleSink
) -> None:
    sink.write(values(2))
    pool = db.pools[0]
    db.kill_sessions()
    result = sink.write(values(5, start=10))
    assert result.written == 5
    assert pool.dropped == 1
    assert db.count() == 7


def test_stale_sessions_are_tried_at_most_once_per_pooled_connection(
    db: FakeOracle, make_sink: Callable[..., OracleSink]
) -> None:
    sink = make_sink(pool_size=3)
    db.inject("executemany", connection_lost, times=100)
    with pytest.raises(TransientSinkError) as info:
        sink.write(values(2))
    assert info.value.code == "DPY-4011"
    assert db.pools[0].dropped == 4  # the first try and one more per pooled connection
    assert db.count() == 0


def test_a_hanging_database_ends_at_the_call_timeout_and_the_session_is_dropped(
    db: FakeOracle, make_sink: Callable[..., OracleSink]
) -> None:
    sink = make_sink(call_timeout_s=0.05)
    sink.ping()
    db.hang_s = 3600  # a lost network: the call would block for many minutes
    with pytest.raises(TransientSinkError) as info:
        sink.write(values(3))
    assert info.value.code == "DPY-4024"
    assert db.pools[0].dropped == 1
    db.hang_s = 0
    assert sink.write(values(3)).written == 3


def test_no_free_connection_within_the_pool_wait_is_transient(
    db: FakeOracle, make_sink: Callable[..., OracleSink]
) -> None:
    sink = make_sink(pool_size=1, pool_wait_timeout_s=0.05, call_timeout_s=5)
    sink.ping()
    db.hang_s = 0.4  # slow, not dead: the first write holds the only connection for a while
    first = threading.Thread(target=sink.write, args=(values(2),))
    first.start()
    try:
        deadline = threading.Event()
        while db.pools[0].busy == 0 and not deadline.wait(0.005):
            pass
        with pytest.raises(TransientSinkError) as info:
            sink.write(values(2, start=50))
        assert info.value.code == "DPY-4005"
    finally:
        first.join(5)
    assert db.count() == 2


def test_a_lost_commit_acknowledgement_is_retried_into_duplicates(db: FakeOracle, sink: OracleSink) -> None:
    db.inject("commit", connection_lost, after=True)
    batch = values(6)
    result = sink.write(batch)  # the commit went through, its answer was lost, the sink tried again
    assert (result.written, result.duplicates) == (0, 6)  # the key makes the retry harmless
    assert db.count() == 6
    assert db.commits == 2


def test_a_lost_acknowledgement_of_an_instance_going_down_is_left_to_the_writer(
    db: FakeOracle, sink: OracleSink
) -> None:
    sink.ping()  # one pooled session, which the lost commit kills
    db.inject("commit", connection_lost, after=True)
    db.inject("connect", connection_refused)  # and the instance is gone for the next connection
    batch = values(6)
    with pytest.raises(TransientSinkError) as info:
        sink.write(batch)  # the retry cannot connect: the writer retries later
    assert info.value.code == "DPY-6005"
    assert db.count() == 6  # it was committed after all
    result = sink.write(batch)
    assert (result.written, result.duplicates) == (0, 6)


def test_a_batch_error_that_is_not_about_the_row_rolls_the_whole_batch_back(
    db: FakeOracle, sink: OracleSink
) -> None:
    db.fail_rows(
        lambda row: row["TAG_NAME"] == "LINE1.FIC0002.PV",
        1653,
        "unable to extend table APP.TAG_DATA by 128 in tablespace USERS",
    )
    with pytest.raises(PermanentSinkError) as info:
        sink.write(values(5))
    assert info.value.code == "ORA-01653"
    assert db.count() == 0  # the other four were not committed piecemeal


def test_writers_share_the_pool_without_exceeding_it(
    db: FakeOracle, make_sink: Callable[..., OracleSink]
) -> None:
    sink = make_sink(pool_size=5, pool_wait_timeout_s=5)
    db.hang_s = 0.02
    errors: list[BaseException] = []

    def write(start: int) -> None:
        try:
            for round_ in range(4):
                sink.write(values(50, start=start + round_ * 50))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n * 1000,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert db.count() == 8 * 4 * 50
    assert db.pools[0].opened <= 5


def test_close_is_safe_twice_and_later_writes_fail_transiently(db: FakeOracle, sink: OracleSink) -> None:
    sink.write(values(1))
    sink.close()
    sink.close()
    with pytest.raises(SinkError) as info:
        sink.write(values(1, start=5))
    assert info.value.transient
    with pytest.raises(oracledb.InterfaceError):
        db.pools[0].acquire()  # the pool itself is closed


def test_an_empty_batch_does_not_touch_the_database(db: FakeOracle, sink: OracleSink) -> None:
    assert sink.write([]).total == 0
    assert db.pools == []
