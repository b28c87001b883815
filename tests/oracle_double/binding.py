"""The client side of python-oracledb: how a bind variable gets its type (from ``setinputsizes``
or its first non-None value: a ``datetime`` becomes DATE), what a later value of another type does
(DPY-3013), and the NUMBER encoding that refuses NaN, infinities and out-of-range numbers before
anything is sent (DPY-4004, DPY-4003), batch errors or not."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import oracledb
from oracledb import errors as driver_errors

from tests.oracle_double.errors import driver_error

_NAMES = {
    oracledb.DB_TYPE_NUMBER: "NUMBER",
    oracledb.DB_TYPE_VARCHAR: "VARCHAR",
    oracledb.DB_TYPE_DATE: "DATE",
    oracledb.DB_TYPE_TIMESTAMP: "TIMESTAMP",
    oracledb.DB_TYPE_BOOLEAN: "BOOLEAN",
    oracledb.DB_TYPE_BINARY_INTEGER: "BINARY_INTEGER",
}


@dataclass
class _BindVar:
    dbtype: Any = None
    size: int | None = None
    has_value: bool = False


def bind_all(
    declared: list[Any], rows: Sequence[Sequence[object]], *, supports_bool: bool
) -> tuple[list[list[object]], tuple[str, ...]]:
    width = max((len(row) for row in rows), default=len(declared))
    variables = [_declared_var(declared[i] if i < len(declared) else None) for i in range(width)]
    out: list[list[object]] = []
    for row in rows:
        if len(row) != width:
            raise driver_error(
                driver_errors.ERR_WRONG_NUMBER_OF_POSITIONAL_BINDS, expected_num=width, actual_num=len(row)
            )
        converted: list[object] = []
        for var, value in zip(variables, row, strict=True):
            converted.append(_bind_value(var, value, supports_bool))
        out.append(converted)
    types = tuple(
        _NAMES.get(var.dbtype, "VARCHAR" if var.dbtype is None else str(var.dbtype)) for var in variables
    )
    return out, types


def _declared_var(declared: Any) -> _BindVar:
    if declared is None:
        return _BindVar()
    if isinstance(declared, int) and not isinstance(declared, bool):
        return _BindVar(oracledb.DB_TYPE_VARCHAR, declared)
    if isinstance(declared, oracledb.DbType):
        return _BindVar(declared)
    if declared in (int, float):
        return _BindVar(oracledb.DB_TYPE_NUMBER)
    if declared is str:
        return _BindVar(oracledb.DB_TYPE_VARCHAR)
    if declared is dt.datetime:
        return _BindVar(oracledb.DB_TYPE_TIMESTAMP)
    raise driver_error(driver_errors.ERR_PYTHON_TYPE_NOT_SUPPORTED, typ=declared)


def _type_of(value: object, supports_bool: bool) -> Any:
    if isinstance(value, bool):
        return oracledb.DB_TYPE_BOOLEAN if supports_bool else oracledb.DB_TYPE_BINARY_INTEGER
    if isinstance(value, str):
        return oracledb.DB_TYPE_VARCHAR
    if isinstance(value, int | float | Decimal):
        return oracledb.DB_TYPE_NUMBER
    if isinstance(value, dt.date):  # datetime included: python-oracledb binds it as DATE
        return oracledb.DB_TYPE_DATE
    raise driver_error(driver_errors.ERR_PYTHON_VALUE_NOT_SUPPORTED, type_name=type(value).__name__)


def _acceptable(dbtype: Any, value: object) -> bool:
    if dbtype in (oracledb.DB_TYPE_NUMBER, oracledb.DB_TYPE_BINARY_INTEGER):
        return isinstance(value, bool | int | float | Decimal)
    if dbtype is oracledb.DB_TYPE_VARCHAR:
        return isinstance(value, str | bytes)
    if dbtype in (oracledb.DB_TYPE_DATE, oracledb.DB_TYPE_TIMESTAMP):
        return isinstance(value, dt.date)
    return dbtype is oracledb.DB_TYPE_BOOLEAN


def _bind_value(var: _BindVar, value: object, supports_bool: bool) -> object:
    if value is None:
        return None
    if var.dbtype is None or (not var.has_value and not _acceptable(var.dbtype, value)):
        # No type yet, or a declared type the first value does not fit: the driver replaces the
        # variable with one made from the value.
        var.dbtype = _type_of(value, supports_bool)
    elif not _acceptable(var.dbtype, value):
        raise driver_error(
            driver_errors.ERR_UNSUPPORTED_PYTHON_TYPE_FOR_DB_TYPE,
            py_type_name=type(value).__name__,
            db_type_name=var.dbtype.name,
        )
    var.has_value = True
    return _encode(var.dbtype, value)


def _encode(dbtype: Any, value: object) -> object:
    """What reaches the server for ``value`` in a variable of ``dbtype``."""
    if dbtype in (oracledb.DB_TYPE_NUMBER, oracledb.DB_TYPE_BINARY_INTEGER):
        number = int(value) if isinstance(value, bool) else value
        return _oracle_number(str(number))
    if dbtype is oracledb.DB_TYPE_VARCHAR:
        return value.decode() if isinstance(value, bytes) else value
    if dbtype is oracledb.DB_TYPE_BOOLEAN:
        return bool(value)
    assert isinstance(value, dt.date)
    stamp = value if isinstance(value, dt.datetime) else dt.datetime(value.year, value.month, value.day)
    stamp = stamp.replace(tzinfo=None)  # thin mode sends the wall-clock fields; tzinfo is ignored
    if dbtype is oracledb.DB_TYPE_DATE:
        return stamp.replace(microsecond=0)  # DATE has no fractional seconds
    return stamp


def _oracle_number(text: str) -> Decimal:
    """python-oracledb's client-side NUMBER encoding rules, raising its errors."""
    if not text:
        raise driver_error(driver_errors.ERR_NUMBER_STRING_OF_ZERO_LENGTH)
    if len(text) > 172:
        raise driver_error(driver_errors.ERR_NUMBER_STRING_TOO_LONG)
    if not re.fullmatch(r"-?[0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)?", text):
        raise driver_error(driver_errors.ERR_INVALID_NUMBER)  # nan, inf, -inf
    number = Decimal(text)
    if number == 0:
        return Decimal(0)
    # Significant digits without trailing zeros (normalize() would round to the context's 28).
    digits = len("".join(map(str, number.as_tuple().digits)).strip("0"))
    point = number.adjusted() + 1
    if digits > 40 or point > 126 or point < -129:
        raise driver_error(driver_errors.ERR_ORACLE_NUMBER_NO_REPR)
    return number
