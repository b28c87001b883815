"""What a python-oracledb error means for the Oracle sink: data, and one pure function over it.

python-oracledb raises one of the DB API exception classes with an error object in ``args[0]``.
That object carries ``full_code`` (``"ORA-01017"``, or ``"DPY-4011"`` when the driver wraps a
server error, as it does for every error that means the connection is gone), ``code`` (the Oracle
error number, 0 for a driver-only error), ``offset`` (the row of a batch error),
``isrecoverable`` and ``is_session_dead``. The tables below sort the codes by what the sink must
do, in the order of the design:

- the row's key is already stored: a duplicate, skipped (FR-016);
- the row is bad (value too large, string too long, NULL where none is allowed): rejected with its
  code, the rest of the batch committed;
- the database could not be reached, or the outcome is unknown: transient, retried (the primary key
  makes a repeated insert land as duplicates);
- the credentials, the schema or the privileges are wrong: permanent; nothing helps until an
  operator acts, so the data goes to backup and the sink is probed until it is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from collector.sinks.base import PermanentSinkError, SinkError, TransientSinkError


class OracleErrorObject(Protocol):
    """The attributes of python-oracledb's error object (``exc.args[0]``) the sink reads."""

    full_code: str
    code: int
    offset: int
    message: str
    isrecoverable: bool
    is_session_dead: bool


class Disposition(StrEnum):
    DUPLICATE = "duplicate"
    REJECT = "reject"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


MAX_BATCH_ERRORS = 65_535
"""The most batch errors one ``executemany`` can report: python-oracledb raises DPY-4029 beyond
that. Retrying the same call fails the same way, so the sink never sends more rows than this in
one call, and the configuration refuses an Oracle batch size above it."""

DUPLICATE_CODES = frozenset({1})
"""ORA-00001 unique constraint violated: the (tag_name, timestamp) key is stored already."""

ROW_CODES = frozenset(
    {
        1400,  # cannot insert NULL into a column
        1401,  # inserted value too large for column (older servers)
        1426,  # numeric overflow
        1438,  # value larger than specified precision allowed for this column
        1461,  # can bind a LONG value only for insert into a LONG column
        1722,  # invalid number
        1830,  # date format picture ends before converting entire input string
        1839,  # date not valid for month specified
        1841,  # (full) year must be between -4713 and +9999
        1847,  # day of month must be between 1 and last day of month
        1861,  # literal does not match format string
        2290,  # check constraint violated
        2291,  # integrity constraint violated - parent key not found
        12899,  # value too large for column
    }
)
"""Errors about one row's values: the row is rejected with its code, the batch goes on."""

TRANSIENT_CODES = frozenset(
    {
        18,  # maximum number of sessions exceeded
        20,  # maximum number of processes exceeded
        28,  # your session has been killed
        31,  # session marked for kill
        54,  # resource busy
        60,  # deadlock detected
        257,  # archiver error: connect internal only until freed
        600,  # internal error
        603,  # server session terminated by fatal error
        1012,  # not logged on
        1013,  # user requested cancel of current operation (a call timeout)
        1033,  # initialization or shutdown in progress
        1034,  # ORACLE not available
        1089,  # immediate shutdown or close in progress
        1090,  # shutdown in progress - connection is not permitted
        1092,  # instance terminated, disconnection forced
        1109,  # database not open
        2396,  # exceeded maximum idle time
        3113,  # end-of-file on communication channel
        3114,  # not connected to ORACLE
        3135,  # connection lost contact
        12170,  # connect timeout occurred
        12505,  # listener does not currently know of SID
        12514,  # listener does not currently know of service (a PDB still opening)
        12516,  # listener could not find an available handler
        12518,  # listener could not hand off client connection
        12519,  # no appropriate service handler found
        12520,  # listener could not find handler for requested server type
        12521,  # listener does not currently know of instance
        12526,  # only restricted-mode connections
        12527,  # instance in restricted mode or blocking
        12528,  # all instances are blocking new connections
        12537,  # connection closed
        12541,  # no listener
        12543,  # destination host unreachable
        12545,  # target host or object does not exist
        12547,  # lost contact
        12560,  # protocol adapter error
        12570,  # packet reader failure
        12571,  # packet writer failure
        25408,  # cannot safely replay call
    }
)
"""Server errors that mean "not reachable now" or "outcome unknown": retry."""

PERMANENT_CODES = frozenset(
    {
        904,  # invalid identifier: a column is missing
        913,  # too many values
        932,  # inconsistent datatypes: a column has the wrong type
        942,  # table or view does not exist
        947,  # not enough values
        980,  # synonym translation is no longer valid
        1017,  # invalid username/password; logon denied
        1031,  # insufficient privileges
        1045,  # user lacks CREATE SESSION privilege
        1536,  # space quota exceeded for tablespace
        1653,  # unable to extend table
        1654,  # unable to extend index
        1688,  # unable to extend table partition
        1950,  # no privileges on tablespace
        12154,  # could not resolve the connect identifier
        28000,  # the account is locked
        28001,  # the password has expired
        28040,  # no matching authentication protocol
    }
)
"""Server errors an operator must fix (credentials, schema, privileges, space): stop and alert."""

CREDENTIAL_CODES = frozenset({"ORA-01017", "ORA-28000", "ORA-28001"})
"""Invalid username or password, account locked, password expired: each refused login counts
against the profile's ``FAILED_LOGIN_ATTEMPTS`` (10 by default), after which Oracle locks the
account (ORA-28000) until a DBA unlocks it, even once the password is right."""

TRANSIENT_DRIVER_CODES = frozenset(
    {
        "DPY-1001",  # not connected to database
        "DPY-1002",  # connection pool is not open
        "DPY-4005",  # timed out waiting for the pool to return a connection
        "DPY-4011",  # the database or network closed the connection
        "DPY-4024",  # call timeout exceeded (the network or the database stopped answering)
        "DPY-6000",  # listener refused connection
        "DPY-6001",  # service not registered with the listener (a PDB still opening)
        "DPY-6003",  # SID not registered with the listener
        "DPY-6005",  # cannot connect to database (refused, unreachable, timed out)
    }
)

PERMANENT_DRIVER_CODES = frozenset(
    {
        "DPY-4000",  # cannot locate the connect identifier in tnsnames.ora
        "DPY-4001",  # no credentials specified
        "DPY-4003",  # value cannot be represented as an Oracle number (refused on the client)
        "DPY-4004",  # invalid number (NaN, infinity: refused on the client)
        "DPY-4009",  # wrong number of positional bind values
        "DPY-4010",  # a bind variable has no value
        "DPY-4017",  # invalid connect descriptor
        "DPY-4018",  # cannot parse connect string
        "DPY-4026",  # file (tnsnames.ora, wallet) not found
        "DPY-4027",  # no configuration directory
        "DPY-4029",  # more batch errors than one executemany can report (see MAX_BATCH_ERRORS)
        "DPY-6002",  # server certificate DN does not match
        "DPY-6008",  # server certificate could not be verified
    }
)
"""Driver errors about the configuration or about values the driver refuses to bind; DPY-2xxx
(programming) and DPY-3xxx (not supported) are permanent too: the same call fails the same way
however often it is repeated."""

SESSION_DEAD_CODES = frozenset({28, 31, 603, 1012, 1092, 2396, 3113, 3114, 3135, 12537, 12547, 12570})
"""Errors after which the session cannot be used again, whatever the driver's flag says."""

SESSION_DEAD_DRIVER_CODES = frozenset({"DPY-1001", "DPY-4011", "DPY-4024"})
"""A call that timed out leaves the session in an unknown state: drop it rather than reuse it."""


@dataclass(frozen=True, slots=True)
class OracleFailure:
    """One error as the sink reads it."""

    disposition: Disposition
    code: str
    """The most specific code: the Oracle one when there is one (``ORA-01089`` inside a
    ``DPY-4011``), else the driver's. This is ``db.response.status_code`` on the span."""
    driver_code: str
    """python-oracledb's ``full_code`` (``DPY-4011``, ``ORA-00942``)."""
    session_dead: bool
    """The connection must be dropped from the pool, not returned to it."""
    message: str
    """The error text without the driver's help links, on one line."""

    @property
    def from_database(self) -> bool:
        """An Oracle error (ORA-), as opposed to one python-oracledb raised itself (DPY-)."""
        return self.code.startswith("ORA-")

    @property
    def credentials(self) -> bool:
        """The database refused the login itself: see :data:`CREDENTIAL_CODES`."""
        return self.code in CREDENTIAL_CODES

    def sink_error(self) -> SinkError:
        """The error the writer understands: transient or permanent, with the code."""
        if self.disposition is Disposition.PERMANENT:
            return PermanentSinkError(
                self.message, code=self.code, from_database=self.from_database, credentials=self.credentials
            )
        return TransientSinkError(self.message, code=self.code, from_database=self.from_database)


def error_object(exc: BaseException) -> OracleErrorObject | None:
    """python-oracledb's error object from an exception it raised, or None for anything else."""
    args = getattr(exc, "args", ())
    if args and hasattr(args[0], "full_code") and hasattr(args[0], "code"):
        found: OracleErrorObject = args[0]
        return found
    return None


def _codes(error: OracleErrorObject) -> tuple[int, str, str]:
    number = int(getattr(error, "code", 0) or 0)
    driver = str(getattr(error, "full_code", "") or "")
    specific = f"ORA-{number:05d}" if number else (driver or "UNKNOWN")
    return number, driver, specific


def _one_line(message: str) -> str:
    lines = [line.strip() for line in str(message).splitlines()]
    return "; ".join(line for line in lines if line and not line.startswith("Help:"))


def _is_session_dead(error: OracleErrorObject, number: int, driver: str) -> bool:
    return (
        bool(getattr(error, "is_session_dead", False))
        or number in SESSION_DEAD_CODES
        or driver in SESSION_DEAD_DRIVER_CODES
    )


def _call_disposition(error: OracleErrorObject, number: int, driver: str) -> Disposition:
    if number in TRANSIENT_CODES or driver in TRANSIENT_DRIVER_CODES:
        return Disposition.TRANSIENT
    if number in PERMANENT_CODES or driver in PERMANENT_DRIVER_CODES:
        return Disposition.PERMANENT
    if bool(getattr(error, "isrecoverable", False)) or bool(getattr(error, "is_session_dead", False)):
        return Disposition.TRANSIENT
    if driver.startswith(("DPY-2", "DPY-3")):
        return Disposition.PERMANENT
    # Anything else (an unexpected server error, a driver-internal one): the outcome is unknown,
    # so retry; if it persists the batch goes to backup and the circuit opens.
    return Disposition.TRANSIENT


def classify_call_error(error: OracleErrorObject) -> OracleFailure:
    """A failure of a whole call (connect, acquire, execute, commit): transient or permanent."""
    number, driver, specific = _codes(error)
    return OracleFailure(
        disposition=_call_disposition(error, number, driver),
        code=specific,
        driver_code=driver,
        session_dead=_is_session_dead(error, number, driver),
        message=_one_line(getattr(error, "message", "") or str(error)),
    )


def classify_row_error(error: OracleErrorObject) -> OracleFailure:
    """One entry of ``cursor.getbatcherrors()``: a duplicate or a rejected row, unless the code
    says the whole database is in trouble (a session killed, a tablespace full), in which case the
    batch must not be committed piecemeal and the call's disposition applies."""
    number, driver, specific = _codes(error)
    if number in DUPLICATE_CODES:
        disposition = Disposition.DUPLICATE
    elif number in ROW_CODES:
        disposition = Disposition.REJECT
    elif number in TRANSIENT_CODES or number in PERMANENT_CODES or driver.startswith("DPY-"):
        disposition = _call_disposition(error, number, driver)
    else:
        # An unexpected code on one row while the others went in: something about that row.
        disposition = Disposition.REJECT
    return OracleFailure(
        disposition=disposition,
        code=specific,
        driver_code=driver,
        session_dead=_is_session_dead(error, number, driver),
        message=_one_line(getattr(error, "message", "") or str(error)),
    )


def classify_exception(exc: BaseException) -> OracleFailure:
    """:func:`classify_call_error` for an exception; one that is not python-oracledb's (a socket
    error escaping the driver, say) counts as transient with its type as the code."""
    error = error_object(exc)
    if error is not None:
        return classify_call_error(error)
    name = type(exc).__name__
    return OracleFailure(Disposition.TRANSIENT, name, name, True, _one_line(f"{name}: {exc}"))


def as_error_object(value: Any) -> OracleErrorObject:
    """Narrow a batch error from the driver (typed ``Any`` there) to the attributes read here."""
    if not hasattr(value, "full_code") or not hasattr(value, "offset"):
        raise TypeError(f"not a python-oracledb error object: {value!r}")
    narrowed: OracleErrorObject = value
    return narrowed
