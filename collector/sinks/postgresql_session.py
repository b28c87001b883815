"""What the PostgreSQL sink and its key lookup share: how a connection is opened, and the
client-side deadline on every call.

Every wait is bounded: ``connect_timeout_s`` for a new connection, ``call_timeout_s`` as the
server's ``statement_timeout``, and the same again (plus a second) as a client-side deadline that
shuts the socket down if the server, or anything between, accepts a call and never answers. Once
psycopg has sent a query it waits on its socket with no limit of its own.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from collector.sinks.base import SinkError
from collector.sinks.postgresql_errors import call_timeout, classify
from collector.sinks.watchdog import Guard, Watchdog

APPLICATION_NAME = "plc-tag-collector"
"""Shown in pg_stat_activity when the connection string names no application."""

WATCHDOG_GRACE_S = 1.0
"""The client-side deadline is the statement timeout plus this, so the server's own timeout (a
clean, classified error that keeps the connection usable) fires first whenever the server answers."""


def statement_timeout_ms(call_timeout_s: float) -> int:
    return max(1, round(call_timeout_s * 1000))


def connect_kwargs(
    dsn: str, *, connect_timeout_s: float, call_timeout_s: float, settings: Sequence[str] = ()
) -> dict[str, Any]:
    """The keyword arguments for ``psycopg.connect`` (or a pool): autocommit, the connect timeout,
    the statement timeout and UTC as session settings (after any ``options`` the DSN gives, and
    ``settings``, each a ``-c name=value``), and the application name unless the DSN sets one."""
    given = conninfo_to_dict(dsn)
    options = [
        *([str(given["options"])] if given.get("options") else []),
        f"-c statement_timeout={statement_timeout_ms(call_timeout_s)}",
        *settings,
        "-c TimeZone=UTC",
    ]
    kwargs: dict[str, Any] = {
        "autocommit": True,
        # libpq takes whole seconds and enforces at least 2.
        "connect_timeout": max(2, math.ceil(connect_timeout_s)),
        "options": " ".join(options),
    }
    if "application_name" not in given:
        kwargs["application_name"] = APPLICATION_NAME
    return kwargs


def shut_socket(conn: psycopg.Connection[Any]) -> Callable[[], None]:
    """An abort action for the watchdog: shut the connection's socket down. The blocked call then
    fails at once with a connection error; a pool discards the broken connection."""

    def abort() -> None:
        with suppress(OSError, psycopg.Error):
            fd = conn.pgconn.socket
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)

    return abort


class CallDeadline:
    """The client-side deadline for calls on a connection: ``call_timeout_s`` plus a grace second,
    enforced by one watchdog thread that shuts the socket of an overrunning call down."""

    def __init__(self, call_timeout_s: float, *, thread_name: str) -> None:
        self.seconds = call_timeout_s + WATCHDOG_GRACE_S
        self._watchdog = Watchdog(thread_name)

    @contextmanager
    def guard(self, conn: psycopg.Connection[Any]) -> Iterator[Guard]:
        """Run the body with the connection's socket shut down if it overruns the deadline."""
        with self._watchdog.guard(self.seconds, shut_socket(conn)) as armed:
            yield armed

    def error(self, exc: psycopg.Error, guard: Guard | None) -> SinkError:
        """What a failed guarded call means: no answer at all when the deadline fired, else what
        the error itself says."""
        if guard is not None and guard.fired:
            return call_timeout(self.seconds)
        return classify(exc)

    def close(self) -> None:
        self._watchdog.close()
