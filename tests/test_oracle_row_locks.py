"""Row locks between sessions, as Oracle has them, and two writers racing on the same keys.

A session that inserts a key another session has inserted and not committed waits on that row:
ORA-00001 once the other commits, success once it rolls back, DPY-4024 when the call timeout comes
first. Two sessions waiting on each other is a deadlock (ORA-00060 for one of them). The writers'
race must end with every key stored once and every value accounted for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import oracledb
import pytest

from collector.model import TagValue
from collector.retry import RetryPolicy
from collector.sinks.base import ColumnSpec, TransientSinkError
from collector.sinks.oracle import OracleSink, ddl
from collector.sinks.oracle_schema import layout_for
from tests.oracle_double import FakeOracle, WouldHangError
from tests.waiting import wait_until
from tests.writer_rig import WriterRig

DSN = "localhost:1521/FREEPDB1"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
INSERT = layout_for("TAG_DATA", ColumnSpec()).insert_sql
SIZES = (100, oracledb.DB_TYPE_NUMBER, 4000, oracledb.DB_TYPE_TIMESTAMP, 20)


def row(name: str, value: float = 1.0) -> tuple[object, ...]:
    return (name, value, None, T0.replace(tzinfo=None), "GOOD")


@pytest.fixture
def db() -> FakeOracle:
    fake = FakeOracle()
    fake.execute_ddl(ddl())
    return fake


@pytest.fixture
def session(db: FakeOracle) -> Iterator[Callable[..., Any]]:
    """Open a session with the given call timeout (milliseconds); all released at the end."""
    pool = db.create_pool(user="app", password="app-secret", dsn=DSN, min=4, max=4)
    opened: list[Any] = []

    def open_one(call_timeout_ms: int = 2000) -> Any:
        conn = pool.acquire()
        conn.call_timeout = call_timeout_ms
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        if conn._session is not None:
            pool.release(conn)


def insert(conn: Any, rows: list[tuple[object, ...]]) -> list[str]:
    """executemany with batch errors; the codes of the rows refused."""
    cursor = conn.cursor()
    cursor.setinputsizes(*SIZES)
    cursor.executemany(INSERT, rows, batcherrors=True)
    return [error.full_code for error in cursor.getbatcherrors()]


def in_thread(action: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(action())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name="second-session", daemon=True)
    thread.start()
    return thread, outcome


# ---------------------------------------------------------------------- the double, as Oracle


def test_a_second_session_waits_then_finds_the_committed_row_a_duplicate(
    db: FakeOracle, session: Callable[..., Any]
) -> None:
    first, second = session(), session()
    assert insert(first, [row("A")]) == []
    thread, outcome = in_thread(lambda: insert(second, [row("B"), row("A")]))
    wait_until(lambda: db.waiting_sessions == 1, what="the second session to wait on the row lock")
    assert thread.is_alive()  # not an immediate ORA-00001: it waits for the first to decide
    first.commit()
    thread.join(5)
    assert outcome == [["ORA-00001"]]
    second.commit()
    assert sorted(str(r["TAG_NAME"]) for r in db.rows()) == ["A", "B"]
    assert db.lock_waits >= 1


def test_a_second_session_goes_in_once_the_first_rolls_back(
    db: FakeOracle, session: Callable[..., Any]
) -> None:
    first, second = session(), session()
    insert(first, [row("A", 1.0)])
    thread, outcome = in_thread(lambda: insert(second, [row("A", 2.0)]))
    wait_until(lambda: db.waiting_sessions == 1, what="the wait")
    first.rollback()
    thread.join(5)
    assert outcome == [[]]
    second.commit()
    assert [r["TAG_VALUE"] for r in db.rows()] == [2]


def test_the_wait_is_bounded_by_the_call_timeout(db: FakeOracle, session: Callable[..., Any]) -> None:
    first, second = session(), session(call_timeout_ms=100)
    insert(first, [row("A")])
    with pytest.raises(oracledb.Error) as info:
        insert(second, [row("B"), row("A")])
    assert info.value.args[0].full_code == "DPY-4024"
    # The call was undone, B included; the first session's row is untouched.
    second.commit()
    first.commit()
    assert [str(r["TAG_NAME"]) for r in db.rows()] == ["A"]


def test_waiting_with_no_call_timeout_fails_the_test_instead_of_hanging(
    db: FakeOracle, session: Callable[..., Any]
) -> None:
    first, second = session(), session(call_timeout_ms=0)
    insert(first, [row("A")])
    with pytest.raises(WouldHangError):
        insert(second, [row("A")])


def test_two_sessions_waiting_on_each_other_is_a_deadlock(
    db: FakeOracle, session: Callable[..., Any]
) -> None:
    first, second = session(), session()
    insert(first, [row("K1")])
    insert(second, [row("K2")])
    thread, outcome = in_thread(lambda: insert(first, [row("K2")]))
    wait_until(lambda: db.waiting_sessions == 1, what="the first session to wait on K2")
    with pytest.raises(oracledb.Error) as info:
        insert(second, [row("K1")])
    assert info.value.args[0].full_code == "ORA-00060"
    second.rollback()  # what a client does after ORA-00060; the first one's wait ends
    thread.join(5)
    assert outcome == [[]]
    first.commit()
    assert sorted(str(r["TAG_NAME"]) for r in db.rows()) == ["K1", "K2"]


def test_a_killed_session_releases_its_locks(db: FakeOracle, session: Callable[..., Any]) -> None:
    first, second = session(), session()
    insert(first, [row("A")])
    thread, outcome = in_thread(lambda: insert(second, [row("A")]))
    wait_until(lambda: db.waiting_sessions == 1, what="the wait")
    db.kill_sessions()  # PMON rolls the killed session's transaction back at once
    thread.join(5)
    assert (outcome and not isinstance(outcome[0], BaseException)) or isinstance(outcome[0], oracledb.Error)


# ---------------------------------------------------------------------- the sinks


def make_sink(db: FakeOracle, **options: Any) -> OracleSink:
    return OracleSink(dsn=DSN, user="app", password="app-secret", driver=db, **options)


def values(count: int, *, value: float = 1.0) -> list[TagValue]:
    return [TagValue(f"T{i:04d}", value, T0 + timedelta(seconds=i // 100)) for i in range(count)]


def test_a_sink_writing_keys_another_has_not_committed_waits_and_counts_duplicates(db: FakeOracle) -> None:
    first, second = make_sink(db, call_timeout_s=5), make_sink(db, call_timeout_s=5)
    try:
        first.ping()
        second.ping()
        gate = db.hold("commit")  # the first sink's commit waits: its rows stay locked
        first_done, first_result = in_thread(lambda: first.write(values(50)))
        wait_until(lambda: db.executemany_calls == 1, what="the first insert")
        second_done, second_result = in_thread(lambda: second.write(values(50)))
        wait_until(lambda: db.waiting_sessions == 1, what="the second sink to wait on the first's rows")
        gate.set()
        first_done.join(5)
        second_done.join(5)
    finally:
        first.close()
        second.close()
    (a,), (b,) = first_result, second_result
    assert (a.written, a.duplicates) == (50, 0)  # type: ignore[union-attr]
    assert (b.written, b.duplicates) == (0, 50)  # type: ignore[union-attr]
    assert db.count() == 50


def test_a_sink_that_waits_longer_than_its_call_timeout_fails_transiently(db: FakeOracle) -> None:
    holder, waiter = make_sink(db, call_timeout_s=5), make_sink(db, call_timeout_s=0.1)
    try:
        holder.ping()
        gate = db.hold("commit")
        holder_done, _ = in_thread(lambda: holder.write(values(5)))
        wait_until(lambda: db.executemany_calls == 1, what="the holder's insert")
        with pytest.raises(TransientSinkError) as info:
            waiter.write(values(5))
        assert info.value.code == "DPY-4024"
        gate.set()
        holder_done.join(5)
    finally:
        holder.close()
        waiter.close()
    assert db.count() == 5


def test_two_writers_racing_on_the_same_keys_store_each_once_and_account_for_every_value(
    db: FakeOracle, tmp_path: Path
) -> None:
    """Two collectors (two writers, two workers each) fed the same values, one in the opposite
    order, so that they overlap, wait on each other's rows and deadlock now and then."""
    db.hang_s = 0.002  # every round trip takes a moment: the windows between insert and commit overlap
    feed = values(3000)
    sinks = [make_sink(db, call_timeout_s=2), make_sink(db, call_timeout_s=2)]
    retry = RetryPolicy.of(5, [0.01, 0.02, 0.05])
    rigs = [
        WriterRig(tmp_path / name, sink, batch_size=100, workers=2, retry=retry)
        for name, sink in zip(("a", "b"), sinks, strict=True)
    ]
    # The first commit waits until some session waits on its rows, so the writers surely meet.
    gate = db.hold("commit")
    for rig in rigs:
        rig.start()
    try:
        for start in range(0, len(feed), 100):
            rigs[0].buffer.put_many(feed[start : start + 100])
            rigs[1].buffer.put_many(feed[len(feed) - start - 100 : len(feed) - start])
        wait_until(lambda: db.waiting_sessions > 0, 30, what="one writer to wait on the other's rows")
        gate.set()
        wait_until(
            lambda: all(
                r.stats().written + r.stats().duplicate + r.stats().backed_up == len(feed) for r in rigs
            ),
            60,
            what="both writers to settle every value",
        )
    finally:
        for rig in rigs:
            rig.stop()
        for sink in sinks:
            sink.close()

    stored = {(str(r["TAG_NAME"]), r["TIMESTAMP"]) for r in db.rows()}
    assert db.count() == len(stored)  # the key holds: no row twice
    in_files = {
        (row["tag_name"], datetime.fromisoformat(row["timestamp"]).replace(tzinfo=None))
        for rig in rigs
        for row in rig.backup_rows()
    }
    assert stored | in_files == {(v.tag_name, v.timestamp.replace(tzinfo=None)) for v in feed}
    for rig in rigs:
        each = rig.stats()
        # Every value one writer was given ended in exactly one place, and its counters balance.
        assert each.written + each.duplicate + each.rejected + each.backed_up == len(feed)
        assert rig.snapshot().balanced()
    # Between them, each stored key was written once; the other writer's copy was a duplicate.
    assert sum(rig.stats().written for rig in rigs) == len(stored)
    assert db.lock_waits > 0, "the writers never overlapped: the race was not run"
