"""Errors the way python-oracledb raises them: its own exception classes built from its own error
objects (``oracledb.errors._Error``), so ``full_code``, ``code``, ``offset``, ``isrecoverable`` and
``is_session_dead`` are the real ones."""

from __future__ import annotations

from typing import Any, cast

import oracledb
from oracledb import errors as driver_errors


def server_error(code: int, text: str, *, offset: int = 0) -> oracledb.Error:
    """An exception for an Oracle server error, built as python-oracledb builds it."""
    error = driver_errors._Error(f"ORA-{code:05d}: {text}", code=code, offset=offset)
    exc: oracledb.Error = error.exc_type(error)
    return exc


def batch_error(code: int, text: str, offset: int) -> Any:
    """An entry of ``cursor.getbatcherrors()``: the driver's error object, not an exception."""
    return driver_errors._Error(f"ORA-{code:05d}: {text}", code=code, offset=offset)


def driver_error(number: int, context: str | None = None, **args: Any) -> oracledb.Error:
    """An exception for a python-oracledb (DPY) error, built by the driver's own factory."""
    # The driver annotates the optional context as plain ``str`` (its default is None).
    exc = driver_errors._create_exception(number, cast(str, context), **args)
    assert isinstance(exc, oracledb.Error)
    return exc


def connection_refused() -> oracledb.Error:
    return driver_error(
        driver_errors.ERR_CONNECTION_FAILED, "[Errno 111] Connection refused", connection_id="double"
    )


def connection_lost() -> oracledb.Error:
    return driver_error(driver_errors.ERR_CONNECTION_CLOSED, "[Errno 104] Connection reset by peer")


def session_killed() -> oracledb.Error:
    return server_error(28, "your session has been killed")


def instance_shutting_down() -> oracledb.Error:
    return server_error(1089, "immediate shutdown or close in progress - no operations are permitted")


def instance_starting() -> oracledb.Error:
    return server_error(1033, "ORACLE initialization or shutdown in progress")


def invalid_login() -> oracledb.Error:
    return server_error(1017, "invalid credential or not authorized; logon denied")


class WouldHangError(AssertionError):
    """The sink made a call with no call timeout while the database hangs: in production that call
    would block for as long as the network takes to give up (many minutes)."""


def account_locked() -> oracledb.Error:
    return server_error(28000, "The account is locked.")


def password_expired() -> oracledb.Error:
    return server_error(28001, "the password has expired")
