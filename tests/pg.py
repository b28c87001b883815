"""The PostgreSQL server the tests use: 127.0.0.1:5432, trust auth, database ``test``, user ``postgres``.

Tests that need it are marked ``postgres`` and take the ``postgres_server`` fixture (directly or
through ``pg_table`` / ``pg_conn``). When the server does not answer, they skip, except under
CI, where a missing server fails them (see :mod:`tests.ci`). Several test runs may share the server, so every
test works in a scratch table of its own, and the fixture waits a while for a server that another
run has stopped for a moment.

Fault tests may stop the server; :class:`ServerControl` starts it again in a ``finally``, and the
session fixture's teardown starts it once more if anything slipped through.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
import pytest

from collector.sinks.postgresql import ddl
from tests.ci import missing

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_DBNAME = "test"
PG_USER = "postgres"
PG_DSN = f"host={PG_HOST} port={PG_PORT} dbname={PG_DBNAME} user={PG_USER}"
WAIT_FOR_SERVER_S = 30.0
"""How long a test waits for a server that is not answering (another run may be restarting it)."""
START_TIMEOUT_S = 60.0


def server_ready(wait_s: float = 0.0) -> bool:
    """True once the server accepts a connection to the test database (tries for ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with psycopg.connect(PG_DSN, connect_timeout=2):
                return True
        except psycopg.Error:
            if time.monotonic() >= deadline:
                return False
        time.sleep(0.2)


def connect() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5)


def unique_name(prefix: str = "tag_data") -> str:
    """A table name no other test (or other concurrent run) uses."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"


def create_table(conn: psycopg.Connection[tuple[object, ...]], table: str) -> None:
    conn.execute(ddl(table))  # type: ignore[arg-type]


def drop_table(conn: psycopg.Connection[tuple[object, ...]], table: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")  # type: ignore[arg-type]


@contextmanager
def scratch_table(prefix: str = "tag_data") -> Iterator[str]:
    """A freshly created table with the collector's schema, dropped afterwards."""
    table = unique_name(prefix)
    with connect() as conn:
        create_table(conn, table)
    try:
        yield table
    finally:
        with connect() as conn:
            drop_table(conn, table)


def _cluster() -> str:
    versions = sorted(os.listdir("/etc/postgresql"))
    if not versions:
        raise RuntimeError("no PostgreSQL cluster under /etc/postgresql")
    return versions[-1]


def _pg_ctlcluster(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", _cluster(), "main", action],
        check=True,
        capture_output=True,
        timeout=START_TIMEOUT_S,
    )


class ServerControl:
    """Stops and starts the local server for fault tests, and remembers to start it again."""

    def __init__(self) -> None:
        self.stopped_by_us = False

    @staticmethod
    def can_control() -> bool:
        return Path("/etc/postgresql").is_dir() and bool(os.listdir("/etc/postgresql"))

    def stop(self) -> None:
        self.stopped_by_us = True
        _pg_ctlcluster("stop")

    def start(self) -> None:
        _pg_ctlcluster("start")
        if not server_ready(START_TIMEOUT_S):
            raise RuntimeError("PostgreSQL did not come back after start")
        self.stopped_by_us = False

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """The server is down inside the block and running again after it, whatever happens."""
        try:
            self.stop()
            yield
        finally:
            self.start()

    def ensure_running(self) -> None:
        """The safety net: start the server if a test stopped it and did not start it again."""
        if self.stopped_by_us or not server_ready(0):
            with suppress(subprocess.SubprocessError, OSError):
                _pg_ctlcluster("start")
            server_ready(START_TIMEOUT_S)
            self.stopped_by_us = False


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ServerControl]:
    if not server_ready(WAIT_FOR_SERVER_S):
        missing(f"PostgreSQL is not answering at {PG_HOST}:{PG_PORT} (database {PG_DBNAME})")
    control = ServerControl()
    try:
        yield control
    finally:
        control.ensure_running()


@pytest.fixture
def pg_conn(postgres_server: ServerControl) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    server_ready(WAIT_FOR_SERVER_S)
    with connect() as conn:
        yield conn


@pytest.fixture
def pg_table(postgres_server: ServerControl) -> Iterator[str]:
    server_ready(WAIT_FOR_SERVER_S)
    with scratch_table() as table:
        yield table
