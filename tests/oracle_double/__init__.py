"""A double of the python-oracledb surface the Oracle sink uses, faithful where the sink could go wrong.

Oracle cannot run on the development machines, so every change to the Oracle path is checked
against this double. It is a small in-memory Oracle behind the same calls the sink makes
(``create_pool``, ``pool.acquire/release/drop/close``, ``connection.cursor/commit/rollback``,
``call_timeout``, ``cursor.setinputsizes/executemany/getbatcherrors/execute/fetchall/parse``), and it
fails the way python-oracledb fails: with the driver's own exception classes built from the
driver's own error objects (``oracledb.errors._Error``), so ``full_code``, ``code``, ``offset``,
``isrecoverable`` and ``is_session_dead`` are the real ones.

What it reproduces, because the sink has to get it right:

- the client-side bind rules of python-oracledb: a bind variable takes its type from
  ``setinputsizes`` or from its first non-None value (a ``datetime`` becomes DATE, which drops the
  microseconds); a later value of another type fails the whole call with DPY-3013; NaN, infinities
  and numbers beyond NUMBER's range fail the whole call with DPY-4004/DPY-4003, batch errors or not;
  ``tzinfo`` is ignored;
- the server: tables created from the DDL the collector prints, the primary key (ORA-00001), NOT NULL
  (ORA-01400), column sizes (ORA-12899), NUMBER precision (ORA-01438), CHECK constraints
  (ORA-02290), missing tables and columns (ORA-00942, ORA-00904), missing grants (ORA-01031),
  Oracle's empty string being NULL, transactions per session, and ``executemany`` with batch errors
  and offsets;
- the network and the instance: a database that is down (DPY-6005 on connect, DPY-4011 on open
  sessions), starting (ORA-01033), killed sessions (ORA-00028 inside DPY-4011), a call that hangs
  until ``call_timeout`` (DPY-4024; with no call timeout the double fails the test instead of
  hanging), a pool with no free connection (DPY-4005 after ``wait_timeout``), wrong credentials
  (ORA-01017), and any error injected at a chosen operation, before or after it takes effect (a
  commit whose acknowledgement is lost).

It is not a SQL engine: it understands the statements the sink sends (an INSERT with positional
binds, the data-dictionary query, the DDL), the key lookup of ``collector replay --dry-run`` (a
SELECT of the key columns with a multi-column IN list of positional binds, bound like any other
call), and answers anything else with ORA-00900.

One module per layer: :mod:`.errors` (the driver's exceptions), :mod:`.sql` (statement
recognition), :mod:`.schema` (tables, DDL, the rules a stored value passes), :mod:`.binding` (the
client's bind rules), :mod:`.server` (sessions, transactions, faults, the network),
:mod:`.client` (pool, connection, cursor).
"""

from tests.oracle_double.client import FakeConnection, FakeCursor, FakePool
from tests.oracle_double.errors import (
    WouldHangError,
    batch_error,
    connection_lost,
    connection_refused,
    driver_error,
    instance_shutting_down,
    instance_starting,
    invalid_login,
    server_error,
    session_killed,
)
from tests.oracle_double.schema import Column, Table
from tests.oracle_double.server import FakeOracle, Fault

__all__ = [
    "Column",
    "FakeConnection",
    "FakeCursor",
    "FakeOracle",
    "FakePool",
    "Fault",
    "Table",
    "WouldHangError",
    "batch_error",
    "connection_lost",
    "connection_refused",
    "driver_error",
    "instance_shutting_down",
    "instance_starting",
    "invalid_login",
    "server_error",
    "session_killed",
]
