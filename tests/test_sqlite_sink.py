import math
import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.model import TagValue
from collector.sinks.base import ColumnSpec, PermanentSinkError
from collector.sinks.sqlite import (
    WAL_AUTOCHECKPOINT_PAGES,
    SqliteSink,
    ddl,
    sqlite_columns,
    sqlite_row,
    sqlite_timestamp,
    sqlite_timestamps,
)

STAMP = datetime(2026, 11, 28, 21, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def sink(tmp_path):
    s = SqliteSink(tmp_path / "tags.db")
    yield s
    s.close()


def rows(sink: SqliteSink) -> list[tuple]:
    conn = sqlite3.connect(sink.path)
    try:
        return conn.execute(
            "SELECT tag_name, tag_value, tag_value_text, timestamp, quality FROM TAG_DATA ORDER BY rowid"
        ).fetchall()
    finally:
        conn.close()


def test_creates_its_table_in_wal_mode_on_first_use(sink):
    assert not sink.path.exists()  # nothing is opened until the first probe or write
    sink.ping()
    conn = sqlite3.connect(sink.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {r[1] for r in conn.execute("PRAGMA index_list(TAG_DATA)")}
    assert "TAG_DATA_timestamp_ix" in indexes
    conn.close()


def test_its_connection_checkpoints_the_log_every_ten_thousand_pages(sink):
    sink.ping()
    assert sink._conn is not None
    pages = sink._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    assert pages == WAL_AUTOCHECKPOINT_PAGES == 10_000


def test_values_land_in_their_columns_exactly(sink):
    batch = [
        TagValue("f", 1.25, STAMP),
        TagValue("i", 2**62, STAMP),
        TagValue("big", 2**63, STAMP),
        TagValue("s", "RUNNING", STAMP),
        TagValue("b", True, STAMP),
        TagValue("nan", float("nan"), STAMP),
        TagValue("bad", None, STAMP, "BAD"),
    ]
    result = sink.write(batch)
    assert (result.written, result.duplicates, result.rejected) == (7, 0, [])
    assert rows(sink) == [
        ("f", 1.25, None, "2026-11-28 21:00:00.123456", "GOOD"),
        ("i", 2**62, None, "2026-11-28 21:00:00.123456", "GOOD"),
        ("big", None, str(2**63), "2026-11-28 21:00:00.123456", "GOOD"),
        ("s", None, "RUNNING", "2026-11-28 21:00:00.123456", "GOOD"),
        ("b", 1, None, "2026-11-28 21:00:00.123456", "GOOD"),
        ("nan", None, "nan", "2026-11-28 21:00:00.123456", "GOOD"),
        ("bad", None, None, "2026-11-28 21:00:00.123456", "BAD"),
    ]


def test_timestamps_are_stored_in_utc_with_microseconds(sink):
    korea = timezone(timedelta(hours=9))
    sink.write([TagValue("T", 1, datetime(2026, 1, 1, 9, 0, 0, 1, tzinfo=korea))])
    assert rows(sink)[0][3] == "2026-01-01 00:00:00.000001"


def test_duplicates_within_and_across_batches_are_counted_not_stored(sink):
    first = sink.write([TagValue("T", 1, STAMP), TagValue("T", 2, STAMP)])
    assert (first.written, first.duplicates) == (1, 1)
    second = sink.write([TagValue("T", 3, STAMP), TagValue("U", 4, STAMP)])
    assert (second.written, second.duplicates) == (1, 1)
    assert [r[:2] for r in rows(sink)] == [("T", 1), ("U", 4)]


def test_a_batch_longer_than_one_statement_is_written_whole_in_file_order(sink):
    # More rows than one INSERT statement carries, with repeats inside and across statements and
    # keys already stored: every row is counted once and stored once, in the order given.
    stored = [TagValue(f"T{i:04d}", i, STAMP) for i in range(0, 2600, 7)]
    sink.write(stored)
    batch = [TagValue(f"T{i:04d}", float(i), STAMP) for i in range(2600)]
    batch += batch[1200:1300]
    result = sink.write(batch)
    assert (result.written, result.duplicates, result.rejected) == (2600 - len(stored), len(stored) + 100, [])
    names = [r[0] for r in rows(sink)]
    assert sorted(names) == [f"T{i:04d}" for i in range(2600)]
    assert names[len(stored) :] == [f"T{i:04d}" for i in range(2600) if i % 7]


def test_rows_the_table_refuses_are_rejected_and_the_rest_committed(tmp_path):
    path = tmp_path / "strict.db"
    conn = sqlite3.connect(path)
    conn.executescript(ddl().replace("tag_value NUMERIC,", "tag_value NUMERIC CHECK (tag_value < 1000),"))
    conn.close()
    sink = SqliteSink(path)
    batch = [TagValue(f"T{i}", value, STAMP) for i, value in enumerate([1, 5000, 2, 7000, 3])]
    result = sink.write(batch)
    assert result.written == 3
    assert [e.index for e in result.rejected] == [1, 3]
    assert all(e.code == "SQLITE_CONSTRAINT_CHECK" and "CHECK" in e.message for e in result.rejected)
    assert sorted(r[0] for r in rows(sink)) == ["T0", "T2", "T4"]
    # A duplicate in the same batch as a bad row is still a duplicate, not a rejection.
    again = sink.write([TagValue("T0", 1, STAMP), TagValue("T9", 9000, STAMP)])
    assert (again.written, again.duplicates, len(again.rejected)) == (0, 1, 1)
    sink.close()


def test_empty_batch_is_a_no_op(sink):
    result = sink.write([])
    assert (result.written, result.duplicates, result.rejected) == (0, 0, [])


def test_missing_table_is_permanent_when_the_sink_may_not_create_it(tmp_path):
    sink = SqliteSink(tmp_path / "empty.db", create_table=False)
    with pytest.raises(PermanentSinkError, match="no such table"):
        sink.ping()
    with pytest.raises(PermanentSinkError):
        sink.write([TagValue("T", 1, STAMP)])
    sink.close()


def test_dropped_table_is_recreated_by_the_probe(sink):
    sink.write([TagValue("T", 1, STAMP)])
    conn = sqlite3.connect(sink.path)
    conn.execute("DROP TABLE TAG_DATA")
    conn.commit()
    conn.close()
    with pytest.raises(PermanentSinkError):
        sink.write([TagValue("T", 2, STAMP)])
    sink.ping()
    assert sink.write([TagValue("T", 2, STAMP)]).written == 1


def test_custom_table_and_column_names(tmp_path):
    columns = ColumnSpec(tag_name="name", tag_value="num", tag_value_text="txt", timestamp="ts", quality="q")
    sink = SqliteSink(tmp_path / "c.db", table="history", columns=columns)
    assert sink.write([TagValue("T", "x", STAMP)]).written == 1
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("SELECT name, txt, ts, q FROM history").fetchall() == [
        ("T", "x", "2026-11-28 21:00:00.123456", "GOOD")
    ]
    conn.close()
    sink.close()


def test_ddl_runs_on_sqlite_and_enforces_the_key():
    conn = sqlite3.connect(":memory:")
    conn.executescript(ddl())
    conn.execute("INSERT INTO TAG_DATA VALUES ('T', 1, NULL, '2026-01-01 00:00:00.000000', 'GOOD')")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO TAG_DATA VALUES ('T', 2, NULL, '2026-01-01 00:00:00.000000', 'GOOD')")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO TAG_DATA VALUES ('T', 2, NULL, '2026-01-01 00:00:01.000000', 'MAYBE')")


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-131, 1e-130, 1e126, -1e126, 9.99e125, 5e-324]),
    st.text(max_size=5),
)
# UTC (what intake makes), other zones and naive (taken as UTC): each has its own way through.
_stamps = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.just(UTC) | st.timezones() | st.none(),
)


@given(st.lists(st.tuples(st.text(min_size=1, max_size=5), _scalars, _stamps), max_size=40))
def test_a_batch_bound_column_by_column_is_every_row_bound_alone(
    readings: list[tuple[str, object, datetime]],
) -> None:
    batch = [TagValue(name, value, stamp) for name, value, stamp in readings]  # type: ignore[arg-type]
    params, positions, rejected = sqlite_columns(batch)
    expected = [sqlite_row(value) for value in batch]
    assert positions == list(range(len(batch))) and not rejected
    assert _same_params(params, [part for row in expected for part in row])


@given(
    seconds=st.lists(
        st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)), min_size=1, max_size=3
    ),
    picks=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 999_999)), max_size=60),
)
def test_utc_stamps_sharing_their_second_are_spelled_as_each_alone(
    seconds: list[datetime], picks: list[tuple[int, int]]
) -> None:
    # A few whole seconds (before 1970 too), many stamps within each: the case that spells only
    # the microseconds after the first stamp of a second.
    wholes = [second.replace(microsecond=0, tzinfo=UTC) for second in seconds]
    stamps = [wholes[pick % len(wholes)] + timedelta(microseconds=micro) for pick, micro in picks]
    assert sqlite_timestamps(stamps) == {stamp: sqlite_timestamp(stamp) for stamp in stamps}


def test_a_value_no_column_can_hold_is_refused_alone() -> None:
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    batch = [TagValue("A", 1.5, stamp), TagValue("B", [1], stamp), TagValue("C", "x", stamp)]  # type: ignore[arg-type]
    params, positions, rejected = sqlite_columns(batch)
    assert positions == [0, 2] and [(e.index, e.code) for e in rejected] == [(1, "INVALID")]
    assert params == [
        "A",
        1.5,
        None,
        "2026-01-01 00:00:00.000000",
        "GOOD",
        "C",
        None,
        "x",
        "2026-01-01 00:00:00.000000",
        "GOOD",
    ]


def _same_params(left: list[object], right: list[object]) -> bool:
    """Equal element by element, with the same types (1 is not 1.0 nor True)."""
    return len(left) == len(right) and all(
        type(a) is type(b) and (a == b or (_is_nan(a) and _is_nan(b)))
        for a, b in zip(left, right, strict=True)
    )


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)
