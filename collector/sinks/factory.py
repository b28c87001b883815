"""The one place that turns the validated configuration into a sink or a key lookup.

Sink modules take plain values (a connect string, a table name, a :class:`ColumnSpec`, seconds)
and know nothing of the configuration's models; this module reads ``sink.*`` and calls them. Each
database's module is imported only when it is configured, so the SQLite default needs no
database driver at all.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from collector.sinks.base import ColumnSpec, KeyLookup, Sink

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from collector.config import OracleSinkConfig, PostgresSinkConfig, SinkConfig

SCHEMA_MODULES: dict[str, str] = {
    "sqlite": "collector.sinks.sqlite",
    "oracle": "collector.sinks.oracle_schema",
    "postgresql": "collector.sinks.postgresql_schema",
}
"""Sink type (also the ``collector schema --dialect`` name) -> the module whose ``ddl`` prints its table."""

DIALECTS = tuple(sorted(SCHEMA_MODULES))


def _import(dialect: str, modules: dict[str, str]) -> Any:
    try:
        name = modules[dialect]
    except KeyError:
        raise ValueError(f"unknown dialect {dialect!r}; choose from {', '.join(DIALECTS)}") from None
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"the {dialect} sink is not available: {exc}") from exc


def schema_ddl(dialect: str, table: str = "TAG_DATA", columns: ColumnSpec | None = None) -> str:
    """The DDL for the target table and its timestamp index in ``dialect``."""
    ddl: str = _import(dialect, SCHEMA_MODULES).ddl(table, columns or ColumnSpec())
    return ddl


def build_sink(
    config: SinkConfig,
    *,
    oracle_driver: Any = None,
    tracer: Tracer | None = None,
    clock: Callable[[], float] | None = None,
) -> Sink:
    """The sink the configuration names, built without requiring the database to be up.

    ``oracle_driver`` replaces python-oracledb (a test passes its double); ``tracer`` makes the
    sink's CLIENT span around each insert (the global tracer by default). Raises ValueError when
    the database's driver is not installed. ``clock`` times the Oracle login guard's waits.
    """
    try:
        return _sink(config, oracle_driver, tracer, clock)
    except ModuleNotFoundError as exc:
        raise ValueError(f"the {config.type} sink is not available: {exc}") from exc


def _sink(
    config: SinkConfig, oracle_driver: Any, tracer: Tracer | None, clock: Callable[[], float] | None
) -> Sink:
    if config.type == "sqlite":
        from collector.sinks.sqlite import SqliteSink

        return SqliteSink(
            config.path,
            table=config.table,
            columns=config.columns,
            busy_timeout_s=config.busy_timeout_s,
            tracer=tracer,
        )
    if config.type == "postgresql":
        from collector.sinks.postgresql import PostgresSink

        postgres = PostgresSink(
            postgres_conninfo(config),
            table=config.table,
            columns=config.columns,
            pool_size=config.pool_size,
            connect_timeout_s=config.connect_timeout_s,
            call_timeout_s=config.call_timeout_s,
            pool_wait_timeout_s=config.pool_wait_timeout_s,
            tracer=tracer,
            password=config.secret if config.password_file else None,
        )
        return _guarded(postgres, config, clock)
    from collector.sinks.oracle import OracleSink

    def password() -> str:
        return _oracle_password(config)  # a password file is read again for every new pool

    oracle = OracleSink(
        dsn=config.connect_string(),
        user=config.user or "",
        password=password,
        table=config.table,
        columns=config.columns,
        pool_size=config.pool_size,
        connect_timeout_s=config.connect_timeout_s,
        call_timeout_s=config.call_timeout_s,
        pool_wait_timeout_s=config.pool_wait_timeout_s,
        server_address=None if config.dsn else config.host,
        server_port=None if config.dsn else config.port,
        driver=oracle_driver,
        tracer=tracer,
    )
    return _guarded(oracle, config, clock)


def _guarded(
    sink: Sink, config: OracleSinkConfig | PostgresSinkConfig, clock: Callable[[], float] | None
) -> Sink:
    """The sink behind a login guard: every refused login counts towards an account lock (Oracle's
    FAILED_LOGIN_ATTEMPTS), so after one the guard spaces the next out (see its module)."""
    from collector.sinks.login_guard import LoginBackoff, LoginGuard

    return LoginGuard(
        sink,
        secret=config.secret,
        backoff=LoginBackoff(config.login_retry_s, config.login_retry_max_s, config.max_failed_logins),
        change_hint="the password file changes" if config.password_file else "the service restarts",
        clock=clock or time.monotonic,
    )


def build_key_lookup(config: SinkConfig, *, oracle_driver: Any = None) -> KeyLookup:
    """A read-only check of which keys the configured table holds (``collector replay --dry-run``).
    Raises ValueError when the database's driver is not installed."""
    try:
        return _key_lookup(config, oracle_driver)
    except ModuleNotFoundError as exc:
        raise ValueError(f"the {config.type} sink is not available: {exc}") from exc


def _key_lookup(config: SinkConfig, oracle_driver: Any) -> KeyLookup:
    if config.type == "sqlite":
        from collector.sinks.sqlite import SqliteKeyLookup

        return SqliteKeyLookup(config.path, table=config.table, columns=config.columns)
    if config.type == "postgresql":
        from collector.sinks.postgresql_lookup import PostgresKeyLookup

        return PostgresKeyLookup(
            postgres_conninfo(config),
            table=config.table,
            columns=config.columns,
            connect_timeout_s=config.connect_timeout_s,
            call_timeout_s=config.call_timeout_s,
        )
    from collector.sinks.oracle_lookup import OracleKeyLookup

    return OracleKeyLookup(
        dsn=config.connect_string(),
        user=config.user or "",
        password=_oracle_password(config),
        table=config.table,
        columns=config.columns,
        connect_timeout_s=config.connect_timeout_s,
        call_timeout_s=config.call_timeout_s,
        pool_wait_timeout_s=config.pool_wait_timeout_s,
        driver=oracle_driver,
    )


def postgres_conninfo(config: PostgresSinkConfig) -> str:
    """The libpq connection string: ``dsn`` with the separately configured keys laid over it."""
    from psycopg.conninfo import make_conninfo

    params: dict[str, Any] = {
        "host": config.host,
        "dbname": config.dbname,
        "user": config.user,
        "password": config.secret(),
        "application_name": config.application_name,
    }
    if config.host or "port" in config.model_fields_set:
        params["port"] = config.port
    return make_conninfo(config.dsn or "", **{k: v for k, v in params.items() if v is not None})


def _oracle_password(config: OracleSinkConfig) -> str:
    password = config.secret()
    if password is None:  # the configuration already requires one; keep mypy and a reader sure
        raise ValueError("the Oracle sink needs a password (ORACLE_PASSWORD or ORACLE_PASSWORD_FILE)")
    return password


WRITERS_BY_SINK: dict[str, int] = {"sqlite": 1, "postgresql": 4, "oracle": 2}
"""Writer threads for each database when ``writer.workers`` is not set, for the service and for
``collector replay``, chosen by measurement (docs/benchmarks.md, "Defaults"). SQLite takes one
writer at a time: a second overlaps the next batch's conversion with the last one's commit, but
waits for SQLite's write lock and the interpreter's in turn, and one writer measured as fast alone
(0.92 to 0.98 of plain ``executemany`` against 0.94 to 1.07), faster offered three times what SQLite
takes (0.94 to 1.04 of the sink's own rate against 0.90 to 0.95), and faster in replay, whose file
is read on a thread of its own (0.93 to 0.96 against 0.82 to 0.90). PostgreSQL takes concurrent
inserts, and four writers (within the pool of five) wrote about 1.3 to 1.5 times what one plain
COPY connection does, against 1.1 with two; Oracle could not be measured here and keeps two."""


def writer_workers(workers: int, explicitly_set: bool, sink_type: str) -> int:
    """The writer threads to run: ``writer.workers`` if the configuration sets it, else the
    measured default for the sink."""
    return workers if explicitly_set else WRITERS_BY_SINK.get(sink_type, workers)
