"""The PostgreSQL sink binds a batch column by column: the same values, row for row, as pg_row."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from collector.model import TagValue
from collector.sinks.postgresql import UnstorableTextError, pg_columns, pg_row

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**45), max_value=10**45),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-131, 1e-130, 1e126, 9.99e125, 5e-324]),
    st.text(max_size=5),
    st.sampled_from(["bad\x00text", "lone \ud800"]),
)
_names = st.one_of(st.text(min_size=1, max_size=5), st.sampled_from(["nul\x00name", "\udc80"]))
_stamps = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))]),
)


def _expected(batch: list[TagValue]) -> tuple[list[tuple[object, ...]], list[int], list[tuple[int, str]]]:
    rows, kept, refused = [], [], []
    for index, value in enumerate(batch):
        try:
            rows.append(pg_row(value))
        except UnstorableTextError as exc:
            refused.append((index, exc.code))
            continue
        except (TypeError, ValueError):
            refused.append((index, "INVALID"))
            continue
        kept.append(index)
    return rows, kept, refused


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@given(st.lists(st.tuples(_names, _scalars, _stamps), max_size=30))
def test_a_batch_in_columns_is_every_row_as_pg_row_makes_it(
    readings: list[tuple[str, object, datetime]],
) -> None:
    batch = [TagValue(name, value, stamp) for name, value, stamp in readings]  # type: ignore[arg-type]
    columns, kept, refused = pg_columns(batch)
    rows, expected_kept, expected_refused = _expected(batch)
    assert kept == expected_kept
    assert [(error.index, error.code) for error in refused] == expected_refused
    assert all(len(column) == len(kept) for column in columns)
    got = list(zip(*columns, strict=True)) if kept else []
    assert len(got) == len(rows)
    for mine, theirs in zip(got, rows, strict=True):
        assert all(_same(a, b) for a, b in zip(mine, theirs, strict=True)), (mine, theirs)
        assert mine[3].tzinfo is UTC


def test_an_integer_too_long_to_spell_is_refused_alone() -> None:
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    batch = [TagValue("A", 1.5, stamp), TagValue("B", 10**5000, stamp)]
    columns, kept, refused = pg_columns(batch)
    assert kept == [0] and [e.index for e in refused] == [1] and columns[1] == ["1.5"]
