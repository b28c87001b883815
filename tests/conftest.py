"""Fixtures shared by the test modules."""

from tests.pg import pg_conn, pg_table, postgres_server  # noqa: F401 - fixtures
