"""Error classification, case by case, over error objects built by python-oracledb itself."""

from __future__ import annotations

import pytest
from oracledb import errors as driver_errors

from collector.sinks.base import PermanentSinkError, TransientSinkError
from collector.sinks.oracle_errors import (
    Disposition,
    classify_call_error,
    classify_exception,
    classify_row_error,
    error_object,
)
from tests.oracle_double import batch_error, driver_error, server_error

ORA_TEXT = {
    1: "unique constraint (APP.TAG_DATA_PK) violated",
    28: "your session has been killed",
    904: '"TAG_VALUE_TEXT": invalid identifier',
    942: 'table or view "APP"."TAG_DATA" does not exist',
    1017: "invalid credential or not authorized; logon denied",
    1031: "insufficient privileges",
    1033: "ORACLE initialization or shutdown in progress",
    1034: "the Oracle instance is not available for use",
    1089: "immediate shutdown or close in progress - no operations are permitted",
    1090: "shutdown in progress - connection is not permitted",
    1400: 'cannot insert NULL into ("APP"."TAG_DATA"."QUALITY")',
    1438: "value larger than specified precision allowed for this column",
    1653: "unable to extend table APP.TAG_DATA by 128 in tablespace USERS",
    3113: "end-of-file on communication channel",
    12514: "Cannot connect to database. Service FREEPDB1 is not registered with the listener",
    12541: "Cannot connect to database. No listener at host db port 1521.",
    12899: 'value too large for column "APP"."TAG_DATA"."TAG_VALUE_TEXT" (actual: 4001, maximum: 4000)',
    28000: "The account is locked.",
}


def ora(code: int) -> BaseException:
    return server_error(code, ORA_TEXT[code])


@pytest.mark.parametrize(
    ("code", "driver_code"),
    [
        (1033, "ORA-01033"),
        (1034, "ORA-01034"),
        (1089, "DPY-4011"),  # the driver wraps it: the session is gone
        (1090, "ORA-01090"),
        (12514, "ORA-12514"),
        (12541, "ORA-12541"),
        (3113, "DPY-4011"),
        (28, "DPY-4011"),
    ],
)
def test_instance_and_network_errors_are_transient(code: int, driver_code: str) -> None:
    failure = classify_exception(ora(code))
    assert failure.disposition is Disposition.TRANSIENT
    assert failure.code == f"ORA-{code:05d}"  # the most specific code, even inside DPY-4011
    assert failure.driver_code == driver_code
    assert isinstance(failure.sink_error(), TransientSinkError)


@pytest.mark.parametrize(
    ("number", "args"),
    [
        (driver_errors.ERR_CONNECTION_CLOSED, {}),  # DPY-4011
        (driver_errors.ERR_CONNECTION_FAILED, {"connection_id": "x"}),  # DPY-6005
        (driver_errors.ERR_LISTENER_REFUSED_CONNECTION, {"error_code": "12516"}),  # DPY-6000
        (driver_errors.ERR_INVALID_SERVICE_NAME, {"service_name": "FREEPDB1", "host": "db", "port": 1521}),
        (driver_errors.ERR_POOL_NO_CONNECTION_AVAILABLE, {}),  # DPY-4005
        (driver_errors.ERR_CALL_TIMEOUT_EXCEEDED, {"timeout": 10000}),  # DPY-4024
        (driver_errors.ERR_NOT_CONNECTED, {}),  # DPY-1001
    ],
)
def test_driver_connection_errors_are_transient(number: int, args: dict[str, object]) -> None:
    exc = driver_error(number, **args)
    failure = classify_exception(exc)
    assert failure.disposition is Disposition.TRANSIENT
    assert failure.code == f"DPY-{number:04d}"


@pytest.mark.parametrize("code", [1017, 28000, 942, 904, 1031, 1653])
def test_credentials_schema_privileges_and_space_are_permanent(code: int) -> None:
    failure = classify_exception(ora(code))
    assert failure.disposition is Disposition.PERMANENT
    error = failure.sink_error()
    assert isinstance(error, PermanentSinkError)
    assert error.code == f"ORA-{code:05d}"
    assert ORA_TEXT[code].split(":")[0] in str(error)


@pytest.mark.parametrize(
    ("number", "args"),
    [
        (driver_errors.ERR_CANNOT_PARSE_CONNECT_STRING, {"data": "db::x"}),  # DPY-4018
        (driver_errors.ERR_NO_CREDENTIALS, {}),  # DPY-4001
        (driver_errors.ERR_UNSUPPORTED_PYTHON_TYPE_FOR_DB_TYPE, {"py_type_name": "str", "db_type_name": "X"}),
        # Values the driver refuses on the client: the same batch would fail the same way again.
        (driver_errors.ERR_INVALID_NUMBER, {}),  # DPY-4004
        (driver_errors.ERR_ORACLE_NUMBER_NO_REPR, {}),  # DPY-4003
    ],
)
def test_configuration_and_binding_errors_from_the_driver_are_permanent(
    number: int, args: dict[str, object]
) -> None:
    failure = classify_exception(driver_error(number, **args))
    assert failure.code == f"DPY-{number:04d}"
    assert failure.disposition is Disposition.PERMANENT


def test_dead_sessions_are_recognised_for_dropping() -> None:
    assert classify_exception(ora(28)).session_dead
    assert classify_exception(ora(3113)).session_dead
    assert classify_exception(driver_error(driver_errors.ERR_CALL_TIMEOUT_EXCEEDED, timeout=5)).session_dead
    assert not classify_exception(ora(942)).session_dead
    assert not classify_exception(driver_error(driver_errors.ERR_POOL_NO_CONNECTION_AVAILABLE)).session_dead


@pytest.mark.parametrize(
    ("code", "disposition"),
    [
        (1, Disposition.DUPLICATE),
        (1438, Disposition.REJECT),
        (12899, Disposition.REJECT),
        (1400, Disposition.REJECT),
        (1653, Disposition.PERMANENT),  # tablespace full: not the row's fault, do not commit piecemeal
        (28, Disposition.TRANSIENT),
    ],
)
def test_batch_errors_per_row(code: int, disposition: Disposition) -> None:
    error = batch_error(code, ORA_TEXT[code], offset=7)
    failure = classify_row_error(error)
    assert failure.disposition is disposition
    assert failure.code == f"ORA-{code:05d}"
    assert error.offset == 7


def test_an_unknown_row_error_rejects_the_row_and_an_unknown_call_error_is_retried() -> None:
    row = classify_row_error(batch_error(20001, "custom trigger says no", offset=0))
    assert row.disposition is Disposition.REJECT
    call = classify_call_error(error_object(server_error(20001, "custom trigger says no")))  # type: ignore[arg-type]
    assert call.disposition is Disposition.TRANSIENT


def test_messages_lose_the_help_links_and_fit_on_one_line() -> None:
    failure = classify_exception(ora(1089))
    assert "Help:" not in failure.message
    assert "\n" not in failure.message
    assert failure.message.startswith("DPY-4011: the database or network closed the connection; ORA-01089")


def test_a_non_driver_exception_is_transient_and_named() -> None:
    failure = classify_exception(ConnectionResetError("reset"))
    assert failure.disposition is Disposition.TRANSIENT
    assert failure.code == "ConnectionResetError"
    assert error_object(ValueError("x")) is None
