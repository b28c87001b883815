"""The low-water mark and its record on disk."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.wal.mark import MARK_FILE, LowWaterMark, read_mark, record_mark


def test_the_mark_moves_only_over_contiguous_finished_ranges() -> None:
    mark = LowWaterMark(100)
    assert mark.finish(150, 200) == 100  # finished early: waits for [100, 150)
    assert mark.finish(200, 260) == 100
    assert mark.waiting_ranges == 2
    assert mark.finish(100, 150) == 260  # the gap closes and the mark runs over everything behind it
    assert mark.waiting_ranges == 0


def test_finishing_a_range_twice_is_refused() -> None:
    mark = LowWaterMark(0)
    mark.finish(0, 10)
    with pytest.raises(ValueError, match="already finished"):
        mark.finish(5, 10)
    mark.finish(20, 30)
    with pytest.raises(ValueError, match="already finished"):
        mark.finish(20, 25)


@given(st.data())
def test_any_completion_order_never_passes_an_unfinished_value(data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, 499), max_size=40)))
    bounds = [0, *cuts, 500]
    ranges = list(itertools.pairwise(bounds))
    order = data.draw(st.permutations(ranges))
    mark = LowWaterMark(0)
    finished: set[int] = set()
    for start, end in order:
        result = mark.finish(start, end)
        finished.update(range(start, end))
        lowest_unfinished = min(set(range(500)) - finished, default=500)
        assert result == lowest_unfinished
    assert mark.mark == 500


def test_the_recorded_mark_reads_back(tmp_path) -> None:
    assert read_mark(tmp_path) == (0, None)  # a log that never recorded one
    record_mark(tmp_path, 123_456)
    assert read_mark(tmp_path) == (123_456, None)
    record_mark(tmp_path, 123_999)
    assert read_mark(tmp_path) == (123_999, None)
    assert [p.name for p in tmp_path.iterdir()] == [MARK_FILE]  # no temporary left behind


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b'{"format": 1, "mark": 5, "check": 1}', b'{"format": 9, "mark": 5}', b"\x00\xff" * 8],
)
def test_an_unusable_mark_file_means_read_everything_not_a_failure(tmp_path, content: bytes) -> None:
    (tmp_path / MARK_FILE).write_bytes(content)
    mark, problem = read_mark(tmp_path)
    assert mark == 0
    assert problem is not None and "unreadable" in problem
