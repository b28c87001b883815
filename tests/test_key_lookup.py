"""The read-only key lookup behind ``collector replay --dry-run``, for every sink that offers one,
and a replay into PostgreSQL through the same engine as into SQLite."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from collector.config import Config
from collector.recovery.replay import Outcome, Replayer
from collector.sinks import build_key_lookup, oracle
from collector.sinks.base import KeyLookup, PermanentSinkError, Sink, TransientSinkError
from collector.sinks.oracle_lookup import OracleKeyLookup
from collector.sinks.oracle_schema import ddl_statements
from collector.sinks.postgresql import PostgresSink
from collector.sinks.postgresql_lookup import PostgresKeyLookup
from collector.sinks.sqlite import SqliteKeyLookup, SqliteSink
from tests import pg
from tests.oracle_double import FakeOracle, server_error
from tests.recovery_support import sample_values, write_backup


@dataclass
class Database:
    sink: Callable[[], Sink]
    lookup: Callable[[], KeyLookup]
    count: Callable[[], int]


@contextmanager
def sqlite_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "tags.db"

    def count() -> int:
        import sqlite3

        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT count(*) FROM TAG_DATA").fetchone()[0])

    yield Database(lambda: SqliteSink(path), lambda: SqliteKeyLookup(path), count)


@contextmanager
def postgres_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    request.getfixturevalue("postgres_server")
    pg.server_ready(pg.WAIT_FOR_SERVER_S)
    with pg.scratch_table() as table:

        def count() -> int:
            with pg.connect() as conn:
                row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert row is not None
            return int(str(row[0]))

        yield Database(
            lambda: PostgresSink(pg.PG_DSN, table=table, pool_size=1),
            lambda: PostgresKeyLookup(pg.PG_DSN, table=table),
            count,
        )


@contextmanager
def oracle_double_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    db = FakeOracle()
    db.execute_ddl(oracle.ddl())
    login: dict[str, Any] = {
        "dsn": "localhost:1521/FREEPDB1",
        "user": "app",
        "password": "app-secret",
        "driver": db,
    }
    yield Database(lambda: oracle.OracleSink(**login), lambda: OracleKeyLookup(**login), db.count)


ORACLE_LOGIN: dict[str, Any] = {
    "dsn": os.environ.get("ORACLE_DSN", ""),
    "user": os.environ.get("ORACLE_USER", ""),
    "password": os.environ.get("ORACLE_PASSWORD", ""),
}


@contextmanager
def oracle_live_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A real Oracle (as tests/test_oracle_live.py): a scratch table from the collector's DDL."""
    import oracledb

    table = f"TAG_LOOKUP_{uuid.uuid4().hex[:10].upper()}"
    with oracledb.connect(**ORACLE_LOGIN, tcp_connect_timeout=5) as conn, conn.cursor() as cursor:
        for statement in ddl_statements(table):
            cursor.execute(statement)

    def count() -> int:
        with oracledb.connect(**ORACLE_LOGIN, tcp_connect_timeout=5) as conn, conn.cursor() as cursor:
            cursor.execute(f'SELECT count(*) FROM "{table}"')
            (rows,) = cursor.fetchone()
            return int(rows)

    try:
        yield Database(
            lambda: oracle.OracleSink(**ORACLE_LOGIN, table=table),
            lambda: OracleKeyLookup(**ORACLE_LOGIN, table=table),
            count,
        )
    finally:
        with oracledb.connect(**ORACLE_LOGIN, tcp_connect_timeout=5) as conn, conn.cursor() as cursor:
            cursor.execute(f'DROP TABLE "{table}" PURGE')


DATABASES = [
    pytest.param(sqlite_database, id="sqlite"),
    pytest.param(postgres_database, id="postgresql", marks=pytest.mark.postgres),
    pytest.param(oracle_double_database, id="oracle-double"),
    pytest.param(
        oracle_live_database,
        id="oracle-live",
        marks=[
            pytest.mark.oracle,
            pytest.mark.skipif(
                not all(ORACLE_LOGIN.values()),
                reason="no live Oracle: set ORACLE_DSN, ORACLE_USER and ORACLE_PASSWORD (see docs/oracle.md)",
            ),
        ],
    ),
]


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    factory: Callable[[pytest.FixtureRequest, Path], AbstractContextManager[Database]] = request.param
    with factory(request, tmp_path) as db:
        yield db


def test_the_lookup_finds_exactly_the_stored_keys(database: Database) -> None:
    values = sample_values(900)  # more keys than one SQLite statement binds
    sink = database.sink()
    try:
        sink.write(values[::2])
    finally:
        sink.close()
    lookup = database.lookup()
    try:
        keys = [(v.tag_name, v.timestamp) for v in values]
        near_misses = [(name, stamp + timedelta(microseconds=1)) for name, stamp in keys[:20]]
        other_zone = [(name, stamp.astimezone(timezone(timedelta(hours=9)))) for name, stamp in keys[:4]]
        assert lookup.existing_keys([]) == set()
        assert lookup.existing_keys(keys + near_misses) == set(keys[::2])
        # The same instant written in another time zone is the same key.
        assert lookup.existing_keys(other_zone) == {other_zone[0], other_zone[2]}
    finally:
        lookup.close()
        lookup.close()


def test_a_dry_run_and_a_replay_agree_on_every_database(database: Database, tmp_path: Path) -> None:
    values = sample_values(700)
    path = write_backup(tmp_path / "backup", values)
    sink = database.sink()
    try:
        sink.write(values[100:350])
    finally:
        sink.close()
    replayer = Replayer(database.sink, lookup_factory=database.lookup, batch_size=200)
    (checked,) = replayer.run([path], dry_run=True).files
    assert (checked.outcome, checked.written, checked.present) == (Outcome.CHECKED, 450, 250)
    assert database.count() == 250
    (done,) = replayer.run([path]).files
    assert (done.outcome, done.written, done.present, done.rejected) == (Outcome.REPLAYED, 450, 250, 0)
    assert database.count() == 700


def test_sqlite_lookup_is_read_only_and_a_missing_database_holds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "tags.db"
    lookup = SqliteKeyLookup(path)
    key = ("L1.T000", datetime(2026, 3, 1, tzinfo=UTC))
    assert lookup.existing_keys([key]) == set()
    assert not path.parent.exists()
    path.parent.mkdir()
    path.touch()  # a file without the table: nothing is stored either
    assert lookup.existing_keys([key]) == set()
    lookup.close()


@pytest.mark.postgres
def test_postgres_lookup_reports_a_missing_table_as_permanent(postgres_server: pg.ServerControl) -> None:
    lookup = PostgresKeyLookup(pg.PG_DSN, table=pg.unique_name("missing"))
    try:
        with pytest.raises(PermanentSinkError) as caught:
            lookup.existing_keys([("L1.T000", datetime(2026, 3, 1, tzinfo=UTC))])
        assert caught.value.code == "42P01"
    finally:
        lookup.close()


def test_postgres_lookup_reports_an_unreachable_server_as_transient() -> None:
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # nothing listens once this closes
    lookup = PostgresKeyLookup(f"host=127.0.0.1 port={port} dbname=test user=postgres", connect_timeout_s=2)
    try:
        with pytest.raises(TransientSinkError):
            lookup.existing_keys([("L1.T000", datetime(2026, 3, 1, tzinfo=UTC))])
    finally:
        lookup.close()


def test_every_configured_sink_type_builds_its_lookup(tmp_path: Path) -> None:
    sqlite = Config.model_validate({"sink": {"type": "sqlite", "path": str(tmp_path / "t.db")}})
    postgres = Config.model_validate({"sink": {"type": "postgresql", "dsn": pg.PG_DSN}})
    oracle_config = Config.model_validate(
        {"sink": {"type": "oracle", "dsn": "localhost:1521/FREEPDB1", "user": "app", "password": "x"}}
    )
    for config, kind in (
        (sqlite, SqliteKeyLookup),
        (postgres, PostgresKeyLookup),
        (oracle_config, OracleKeyLookup),
    ):
        lookup = build_key_lookup(config.sink)
        assert isinstance(lookup, kind)
        lookup.close()


def test_oracle_lookup_classifies_errors_as_the_sink_does() -> None:
    db = FakeOracle()
    db.execute_ddl(oracle.ddl())
    key = ("L1.T000", datetime(2026, 3, 1, 0, 0, 0, 7, tzinfo=UTC))
    lookup = OracleKeyLookup(dsn="localhost:1521/FREEPDB1", user="app", password="app-secret", driver=db)
    try:
        db.go_down()
        with pytest.raises(TransientSinkError):
            lookup.existing_keys([key])
        db.come_up()
        db.inject("execute", lambda: server_error(942, 'table or view "APP"."TAG_DATA" does not exist'))
        with pytest.raises(PermanentSinkError) as caught:
            lookup.existing_keys([key])
        assert caught.value.code == "ORA-00942"
        assert lookup.existing_keys([key]) == set()  # the session is still usable afterwards
    finally:
        lookup.close()
        lookup.close()
