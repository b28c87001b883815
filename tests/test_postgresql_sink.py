"""The PostgreSQL sink: what is specific to PostgreSQL (the shared behaviour is in
test_sink_contract.py). The first tests need no server; the rest run against the real one."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import PoolTimeout

from collector import cli
from collector.config import PostgresSinkConfig
from collector.model import TagValue
from collector.sinks import build_sink, schema_ddl
from collector.sinks.base import (
    ColumnSpec,
    ErrorKind,
    PermanentSinkError,
    SinkError,
    TransientSinkError,
    WriteResult,
)
from collector.sinks.factory import postgres_conninfo
from collector.sinks.postgresql import PostgresSink, UnstorableTextError, pg_row
from collector.sinks.postgresql_errors import classify, is_row_error
from collector.sinks.postgresql_schema import ddl, identifier
from tests import pg
from tests.tcp_proxy import Mode, TcpProxy

STAMP = datetime(2026, 11, 28, 21, 37, 59, 123456, tzinfo=UTC)


def batch_of(count: int, prefix: str = "T") -> list[TagValue]:
    return [TagValue(f"{prefix}{index:04d}", index * 0.5, STAMP) for index in range(count)]


def pool_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("collector-postgresql")]


# ---------------------------------------------------------------------- without a server


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (errors.UndefinedTable("relation does not exist"), ErrorKind.PERMANENT, "42P01"),
        (errors.UndefinedColumn("column does not exist"), ErrorKind.PERMANENT, "42703"),
        (errors.InsufficientPrivilege("permission denied"), ErrorKind.PERMANENT, "42501"),
        (errors.InvalidColumnReference("no unique constraint"), ErrorKind.PERMANENT, "42P10"),
        (errors.InvalidPassword("password authentication failed"), ErrorKind.PERMANENT, "28P01"),
        (errors.InvalidCatalogName("database does not exist"), ErrorKind.PERMANENT, "3D000"),
        (errors.AdminShutdown("terminating connection"), ErrorKind.TRANSIENT, "57P01"),
        (errors.CannotConnectNow("the database system is starting up"), ErrorKind.TRANSIENT, "57P03"),
        (errors.QueryCanceled("canceling statement due to statement timeout"), ErrorKind.TRANSIENT, "57014"),
        (errors.ConnectionFailure("connection failure"), ErrorKind.TRANSIENT, "08006"),
        (errors.TooManyConnections("sorry, too many clients"), ErrorKind.TRANSIENT, "53300"),
        (errors.DiskFull("could not extend file"), ErrorKind.TRANSIENT, "53100"),
        (errors.SerializationFailure("could not serialize"), ErrorKind.TRANSIENT, "40001"),
        (errors.DeadlockDetected("deadlock detected"), ErrorKind.TRANSIENT, "40P01"),
        (errors.LockNotAvailable("could not obtain lock"), ErrorKind.TRANSIENT, "55P03"),
        (errors.ReadOnlySqlTransaction("read-only transaction"), ErrorKind.TRANSIENT, "25006"),
        (
            psycopg.OperationalError(
                'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused'
            ),
            ErrorKind.TRANSIENT,
            "08001",
        ),
        (
            psycopg.OperationalError("consuming input failed: server closed the connection"),
            ErrorKind.TRANSIENT,
            "08006",
        ),
        (errors.ConnectionTimeout("connection timeout expired"), ErrorKind.TRANSIENT, "08001"),
        (
            psycopg.OperationalError(
                'connection failed: FATAL:  password authentication failed for user "x"'
            ),
            ErrorKind.PERMANENT,
            "28P01",
        ),
        (
            psycopg.OperationalError('connection failed: FATAL:  role "x" does not exist'),
            ErrorKind.PERMANENT,
            "28000",
        ),
        (
            psycopg.OperationalError('connection failed: FATAL:  no pg_hba.conf entry for host "10.0.0.1"'),
            ErrorKind.PERMANENT,
            "28000",
        ),
        (
            psycopg.OperationalError('connection failed: FATAL:  database "plant" does not exist'),
            ErrorKind.PERMANENT,
            "3D000",
        ),
        (PoolTimeout("couldn't get a connection after 5.00 sec"), ErrorKind.TRANSIENT, "POOL_TIMEOUT"),
    ],
)
def test_errors_are_classified_by_sqlstate_class(exc: Exception, kind: ErrorKind, code: str) -> None:
    error = classify(exc)
    assert (error.kind, error.code) == (kind, code)
    assert isinstance(error, TransientSinkError if kind is ErrorKind.TRANSIENT else PermanentSinkError)


@pytest.mark.parametrize(
    ("exc", "row_level"),
    [
        (errors.StringDataRightTruncation("value too long"), True),
        (errors.NumericValueOutOfRange("numeric field overflow"), True),
        (errors.CheckViolation("violates check constraint"), True),
        (errors.NotNullViolation("null value"), True),
        (errors.UniqueViolation("duplicate key on another unique index"), True),
        (errors.UndefinedTable("relation does not exist"), False),
        (errors.AdminShutdown("terminating connection"), False),
        (psycopg.OperationalError("server closed the connection"), False),
    ],
)
def test_data_exceptions_and_integrity_violations_are_row_errors(exc: Exception, row_level: bool) -> None:
    assert is_row_error(exc) is row_level


@pytest.mark.parametrize(
    ("name", "rendered"),
    [
        ("TAG_DATA", "tag_data"),
        ("plant.TAG_DATA", "plant.tag_data"),
        ("timestamp", "timestamp"),
        ("user", '"user"'),
        ("Order", '"order"'),
        ("tag#data", '"tag#data"'),
    ],
)
def test_identifiers_fold_to_lower_case_and_are_quoted_only_when_needed(name: str, rendered: str) -> None:
    assert identifier(name) == rendered


def test_the_ddl_has_the_key_the_index_and_the_configured_names() -> None:
    columns = ColumnSpec(
        tag_name="name", tag_value="val", tag_value_text="val_text", timestamp="ts", quality="q"
    )
    text = ddl("plant.TAG_HISTORY", columns)

    assert "CREATE TABLE IF NOT EXISTS plant.tag_history (" in text
    assert "name VARCHAR(100) NOT NULL" in text
    assert "val NUMERIC" in text
    assert "val_text VARCHAR(4000)" in text
    assert "ts TIMESTAMPTZ NOT NULL" in text
    assert "PRIMARY KEY (name, ts)" in text
    assert "CREATE INDEX IF NOT EXISTS plant_tag_history_ts_ix ON plant.tag_history (ts);" in text
    assert schema_ddl("postgresql", "plant.TAG_HISTORY", columns) == text


def test_rows_carry_numbers_as_exact_decimal_text_and_timestamps_in_utc() -> None:
    seoul = timezone(timedelta(hours=9))
    stamp = datetime(2026, 1, 1, 9, 0, 0, 42, tzinfo=seoul)

    assert pg_row(TagValue("a", 0.1, stamp)) == (
        "a",
        "0.1",
        None,
        datetime(2026, 1, 1, 0, 0, 0, 42, tzinfo=UTC),
        "GOOD",
    )
    assert pg_row(TagValue("a", 10**38 - 1, stamp))[1:3] == (str(10**38 - 1), None)
    assert pg_row(TagValue("a", 10**38, stamp))[1:3] == (None, str(10**38))
    assert pg_row(TagValue("a", False, stamp))[1:3] == ("0", None)
    assert pg_row(TagValue("a", float("-inf"), stamp))[1:3] == (None, "-inf")
    assert pg_row(TagValue("a", None, stamp, "BAD"))[1:] == (None, None, stamp, "BAD")


@pytest.mark.parametrize("value", ["nul\x00inside", "lone \ud800 surrogate"])
def test_text_postgresql_cannot_store_is_refused_before_sending(value: str) -> None:
    with pytest.raises(UnstorableTextError):
        pg_row(TagValue("a", value, STAMP))
    with pytest.raises(UnstorableTextError):
        pg_row(TagValue(value, 1, STAMP))


def test_connection_string_combines_dsn_and_keys() -> None:
    keys = PostgresSinkConfig(
        host="db.plant", port=5433, dbname="history", user="collector", password="s3cret"
    )
    params = psycopg.conninfo.conninfo_to_dict(postgres_conninfo(keys))
    assert params == {
        "host": "db.plant",
        "port": "5433",
        "dbname": "history",
        "user": "collector",
        "password": "s3cret",
        "application_name": "plc-tag-collector",
    }

    dsn_only = PostgresSinkConfig(dsn="postgresql://u@db.plant:6432/history")
    params = psycopg.conninfo.conninfo_to_dict(postgres_conninfo(dsn_only))
    assert (params["host"], params["port"], params["dbname"]) == ("db.plant", "6432", "history")


def test_the_sink_is_built_while_nothing_listens_and_bounds_every_wait() -> None:
    # A bound, never-listening socket: connections to its port are refused at once.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        started = time.monotonic()
        sink = PostgresSink(
            f"host=127.0.0.1 port={port} dbname=test user=postgres",
            table="tag_data",
            pool_size=2,
            connect_timeout_s=2,
            pool_wait_timeout_s=0.5,
        )
        try:
            assert time.monotonic() - started < 1.0
            with pytest.raises(TransientSinkError):
                sink.ping()
            with pytest.raises(TransientSinkError) as caught:
                sink.write(batch_of(3))
            assert caught.value.code == "POOL_TIMEOUT"
            assert time.monotonic() - started < 10
        finally:
            sink.close()
    assert pool_threads() == []


# ---------------------------------------------------------------------- against the server

postgres = pytest.mark.postgres


@pytest.fixture
def sink(pg_table: str) -> Iterator[PostgresSink]:
    built = PostgresSink(pg.PG_DSN, table=pg_table, pool_size=2, call_timeout_s=5)
    try:
        yield built
    finally:
        built.close()


def stored_count(conn: psycopg.Connection[tuple[object, ...]], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


@postgres
def test_collector_schema_prints_ddl_the_server_accepts(
    pg_conn: psycopg.Connection[tuple[object, ...]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = pg.unique_name()
    config = tmp_path / "collector.yaml"
    config.write_text(f"sink: {{type: postgresql, host: {pg.PG_HOST}, table: {table}}}\n")

    argv = [
        "schema",
        "--dialect",
        "postgresql",
        "--config",
        str(config),
        "--no-env-file",
    ]
    assert cli.main(argv) == cli.EXIT_OK

    printed = capsys.readouterr().out
    try:
        pg_conn.execute(printed)  # type: ignore[call-overload]
        pg_conn.execute(printed)  # type: ignore[call-overload]  # IF NOT EXISTS: safe to run twice
        indexes = {
            str(name)
            for (name,) in pg_conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,))
        }
        assert indexes == {f"{table}_pkey", f"{table}_timestamp_ix"}
        probe = PostgresSink(pg.PG_DSN, table=table, pool_size=1)
        try:
            probe.ping()
        finally:
            probe.close()
    finally:
        pg.drop_table(pg_conn, table)


@postgres
def test_build_sink_from_configuration(pg_table: str) -> None:
    config = PostgresSinkConfig(
        host=pg.PG_HOST, dbname=pg.PG_DBNAME, user=pg.PG_USER, table=pg_table, pool_size=1
    )
    sink = build_sink(config)
    try:
        assert sink.system_name == "postgresql"
        assert sink.table == pg_table
        sink.ping()
        assert sink.write(batch_of(5)).written == 5
    finally:
        sink.close()


@postgres
def test_numbers_are_stored_exactly_as_numeric(
    sink: PostgresSink, pg_table: str, pg_conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    values = {"tenth": 0.1, "subnormal": 5e-324, "big": 1e125, "ints": 10**38 - 1, "17": 0.30000000000000004}
    sink.write([TagValue(name, value, STAMP) for name, value in values.items()])

    stored = pg_conn.execute(f"SELECT tag_name, tag_value, tag_value_text FROM {pg_table}").fetchall()  # type: ignore[arg-type]
    rows = {name: number for name, number, _ in stored}
    texts = {name: text for name, _, text in stored}
    assert rows["tenth"] == Decimal("0.1")
    assert rows["17"] == Decimal("0.30000000000000004")
    # Below Oracle NUMBER's smallest magnitude (1e-130): text in every database, like NaN.
    assert (rows["subnormal"], texts["subnormal"]) == (None, "5e-324")
    assert rows["big"] == Decimal("1e125")
    assert rows["ints"] == Decimal(10**38 - 1)


@postgres
def test_text_the_server_cannot_store_is_rejected_alone(sink: PostgresSink, pg_table: str) -> None:
    batch = batch_of(5)
    batch[1] = TagValue("T0001", "nul\x00inside", STAMP)
    batch[3] = TagValue("lone \ud800", 1.0, STAMP)

    result = sink.write(batch)

    assert [(e.index, e.code) for e in result.rejected] == [(1, "22021"), (3, "22021")]
    assert (result.written, result.duplicates) == (3, 0)


@postgres
def test_a_check_violation_is_a_row_error(sink: PostgresSink) -> None:
    batch = batch_of(4)
    batch[2] = TagValue("T0002", 1.0, STAMP, "UNCERTAIN")  # not GOOD or BAD: the CHECK refuses it

    result = sink.write(batch)

    assert [(e.index, e.code) for e in result.rejected] == [(2, "23514")]
    assert result.written == 3


@postgres
def test_ping_reports_a_missing_table_as_permanent() -> None:
    sink = PostgresSink(pg.PG_DSN, table=pg.unique_name("missing"), pool_size=1)
    try:
        with pytest.raises(PermanentSinkError) as caught:
            sink.ping()
        assert caught.value.code == "42P01"
        with pytest.raises(PermanentSinkError) as caught:
            sink.write(batch_of(2))
        assert caught.value.code == "42P01"
    finally:
        sink.close()


@postgres
def test_ping_reports_a_missing_column_as_permanent(pg_table: str) -> None:
    sink = PostgresSink(pg.PG_DSN, table=pg_table, columns=ColumnSpec(quality="status"), pool_size=1)
    try:
        with pytest.raises(PermanentSinkError) as caught:
            sink.ping()
        assert caught.value.code == "42703"
    finally:
        sink.close()


@postgres
def test_ping_reports_a_table_without_the_key_as_permanent(
    pg_conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    table = pg.unique_name("nokey")
    pg_conn.execute(
        f"CREATE TABLE {table} (tag_name text, tag_value numeric, tag_value_text text,"  # type: ignore[arg-type]
        " timestamp timestamptz, quality text)"
    )
    sink = PostgresSink(pg.PG_DSN, table=table, pool_size=1)
    try:
        with pytest.raises(PermanentSinkError) as caught:
            sink.ping()
        assert caught.value.code == "42P10"
    finally:
        sink.close()
        pg.drop_table(pg_conn, table)


@postgres
@pytest.mark.parametrize(
    ("dsn", "code"),
    [
        (f"host={pg.PG_HOST} port={pg.PG_PORT} dbname={pg.PG_DBNAME} user=no_such_role", "28000"),
        (f"host={pg.PG_HOST} port={pg.PG_PORT} dbname=no_such_database user={pg.PG_USER}", "3D000"),
    ],
)
def test_ping_reports_a_refused_login_as_permanent(
    postgres_server: pg.ServerControl, dsn: str, code: str
) -> None:
    sink = PostgresSink(dsn, table="tag_data", pool_size=1, pool_wait_timeout_s=0.5)
    try:
        with pytest.raises(PermanentSinkError) as caught:
            sink.ping()
        assert caught.value.code == code
    finally:
        sink.close()


@postgres
@pytest.mark.slow  # waits out real connect and call timeouts, several seconds
def test_a_server_that_accepts_and_never_answers_cannot_hold_a_writer(pg_table: str) -> None:
    with TcpProxy(pg.PG_PORT) as proxy:
        sink = PostgresSink(
            f"host=127.0.0.1 port={proxy.port} dbname={pg.PG_DBNAME} user={pg.PG_USER}",
            table=pg_table,
            pool_size=1,
            connect_timeout_s=2,
            call_timeout_s=0.5,
            pool_wait_timeout_s=0.5,
        )
        try:
            assert sink.write(batch_of(10)).written == 10
            proxy.set_mode(Mode.BLACK_HOLE)

            started = time.monotonic()
            with pytest.raises(TransientSinkError) as caught:
                sink.write(batch_of(10, prefix="U"))
            assert caught.value.code == "CALL_TIMEOUT"
            with pytest.raises(TransientSinkError):
                sink.ping()  # a new connection gets no answer either: connect_timeout fires
            assert time.monotonic() - started < 15

            proxy.set_mode(Mode.PASS)
            sink.ping()
            result = sink.write(batch_of(10, prefix="U"))
            assert result.written + result.duplicates == 10
        finally:
            sink.close()


@postgres
def test_a_lost_acknowledgement_comes_back_as_duplicates(
    pg_table: str, pg_conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    with TcpProxy(pg.PG_PORT) as proxy:
        sink = PostgresSink(
            f"host=127.0.0.1 port={proxy.port} dbname={pg.PG_DBNAME} user={pg.PG_USER}",
            table=pg_table,
            pool_size=1,
        )
        try:
            batch = batch_of(25)
            proxy.swallow_acks(1)
            with pytest.raises(TransientSinkError):
                sink.write(batch)
            assert proxy.swallowed_rows == [25]  # the server did commit them

            retried = sink.write(batch)

            assert (retried.written, retried.duplicates, retried.rejected) == (0, 25, [])
            assert stored_count(pg_conn, pg_table) == 25
        finally:
            sink.close()


@postgres
def test_writers_wait_a_bounded_time_when_every_pooled_connection_is_held(
    pg_table: str, pg_conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    sink = PostgresSink(pg.PG_DSN, table=pg_table, pool_size=2, call_timeout_s=1.0, pool_wait_timeout_s=0.3)
    outcomes: list[WriteResult | SinkError] = []
    lock = threading.Lock()

    def write(prefix: str) -> None:
        try:
            outcome: WriteResult | SinkError = sink.write(batch_of(10, prefix=prefix))
        except SinkError as exc:
            outcome = exc
        with lock:
            outcomes.append(outcome)

    try:
        sink.ping()
        with pg.connect() as holder:
            # Another client locks the table: both pooled connections block inside their INSERT.
            holder.execute("BEGIN")
            holder.execute(f"LOCK TABLE {pg_table} IN ACCESS EXCLUSIVE MODE")  # type: ignore[arg-type]
            threads = [threading.Thread(target=write, args=(p,), name=f"held-{p}") for p in ("A", "B")]
            for thread in threads:
                thread.start()
            time.sleep(0.3)
            with pytest.raises(TransientSinkError) as caught:
                sink.write(batch_of(10, prefix="C"))  # no connection left in the pool
            assert caught.value.code == "POOL_TIMEOUT"
            for thread in threads:
                thread.join(15)
            assert not any(thread.is_alive() for thread in threads)
            holder.execute("ROLLBACK")

        assert sorted(getattr(o, "code", "ok") for o in outcomes) == ["57014", "57014"]
        assert sink.write(batch_of(10, prefix="D")).written == 10
        assert stored_count(pg_conn, pg_table) == 10
    finally:
        sink.close()
