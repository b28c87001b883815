"""The backup inventory: files, bytes, rows and the time range they cover, read once per change."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.backup import CsvSpool
from collector.inventory import ContentsCache, scan
from collector.model import parse_timestamp
from collector.spool_format import (
    BACKUP_HEADER,
    TIMESTAMP_FIELD,
    SpoolKind,
    backup_rows,
    read_header,
    records,
    rejected_rows,
)
from tests.recovery_support import sample_values, write_backup


def test_scan_without_a_cache_only_lists_and_sizes(tmp_path: Path) -> None:
    path = write_backup(tmp_path, sample_values(30))
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    inventory = scan([tmp_path, tmp_path / "missing"])
    (listed,) = inventory.files
    assert (listed.path, listed.kind, listed.bytes, listed.contents) == (
        path,
        "backup",
        path.stat().st_size,
        None,
    )
    assert (inventory.backup_files, inventory.backup_bytes, inventory.backup_rows) == (
        1,
        path.stat().st_size,
        0,
    )


def test_rows_and_time_range_per_file_and_in_total(tmp_path: Path) -> None:
    early = sample_values(120, start=datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    late = sample_values(45, start=datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    write_backup(tmp_path, late)
    write_backup(tmp_path, early)
    rejected = CsvSpool(tmp_path, kind=SpoolKind.REJECTED)
    rejected.append(rejected_rows([(v, "2290", "value too large") for v in early[:7]], datetime.now(UTC)))
    rejected.close()
    replayed = tmp_path / "replayed"
    write_backup(replayed, early)

    inventory = scan([tmp_path], contents=ContentsCache())
    assert sorted(f.contents.rows for f in inventory.files if f.contents) == [7, 45, 120]
    assert (inventory.backup_files, inventory.backup_rows) == (2, 165)
    assert (inventory.rejected_files, inventory.rejected_rows) == (1, 7)
    assert inventory.time_range("backup") == (early[0].timestamp, late[-1].timestamp)
    assert inventory.time_range("rejected") == (early[0].timestamp, early[6].timestamp)


def test_a_growing_file_is_counted_as_it_grows(tmp_path: Path) -> None:
    values = sample_values(900)
    spool = CsvSpool(tmp_path)  # the service, appending during an outage
    cache = ContentsCache()
    try:
        for start in range(0, 900, 300):
            path = spool.append(backup_rows(values[start : start + 300], datetime.now(UTC)))
            seen = cache.contents(path)
            fresh = ContentsCache().contents(path)
            assert seen == fresh
            assert (seen.rows, seen.first, seen.last) == (
                start + 300,
                values[0].timestamp,
                values[start + 299].timestamp,
            )
    finally:
        spool.close()


def test_a_half_written_last_line_is_not_counted_until_it_is_whole(tmp_path: Path) -> None:
    path = write_backup(tmp_path, sample_values(10))
    cache = ContentsCache()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("L1.T001,5,2026-03-01T")
    assert cache.contents(path).rows == 10
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("09:00:00.000000+00:00,GOOD,2026-03-01T09:00:01.000000+00:00\n")
    contents = cache.contents(path)
    assert contents.rows == 11 and contents.last == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_an_unchanged_file_is_not_read_again_and_a_replaced_one_is(tmp_path: Path) -> None:
    path = write_backup(tmp_path, sample_values(10))
    cache = ContentsCache()
    assert cache.contents(path).rows == 10
    # Same size, same modification time: the cache keeps its answer without reading.
    original = path.read_bytes()
    stat = path.stat()
    path.write_bytes(original.replace(b"L1.T001,", b"L1.T00X,"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.contents(path).rows == 10
    # A different file under the same name (replayed and a new one created) is read afresh.
    path.unlink()
    shorter = write_backup(tmp_path, sample_values(4, start=datetime(2026, 4, 1, tzinfo=UTC)))
    shorter.rename(path)
    contents = cache.contents(path)
    assert contents.rows == 4 and contents.first == datetime(2026, 4, 1, 0, 0, 0, 7, tzinfo=UTC)


def test_files_that_are_not_backups_are_reported_not_counted(tmp_path: Path) -> None:
    (tmp_path / "backup_20260301_080000.csv").write_text("time,tag,value\n1,2,3\n", encoding="utf-8")
    (tmp_path / "backup_20260301_080001.csv").touch()
    inventory = scan([tmp_path], contents=ContentsCache())
    problems = [f.contents.problem for f in inventory.files if f.contents]
    assert inventory.backup_rows == 0
    assert problems[0] is not None and "not a backup file" in problems[0]
    assert problems[1] is None  # an empty file is one the service has just created


def test_the_cache_forgets_files_that_are_gone(tmp_path: Path) -> None:
    cache = ContentsCache()
    first = write_backup(tmp_path, sample_values(5))
    scan([tmp_path], contents=cache)
    first.rename(tmp_path / "elsewhere.csv")
    assert scan([tmp_path], contents=cache).files == ()
    assert cache.contents(first).problem == "cannot be read"


def test_time_range_spans_days(tmp_path: Path) -> None:
    start = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
    values = sample_values(40, start=start)
    write_backup(tmp_path, values)
    inventory = scan([tmp_path], contents=ContentsCache())
    first, last = inventory.time_range("backup")
    assert first == values[0].timestamp and last is not None and last - first == timedelta(milliseconds=300)


def test_a_scan_without_refresh_reports_what_was_last_read_and_never_reads(tmp_path: Path) -> None:
    cache = ContentsCache()
    first = write_backup(tmp_path, sample_values(10))
    (unread,) = scan([tmp_path], contents=cache, refresh=False).files
    assert unread.contents is None
    scan([tmp_path], contents=cache)
    with open(first, "a", encoding="utf-8") as handle:  # grows after the last reading
        handle.write("L1.T001,5,2026-03-01T09:00:00.000000+00:00,GOOD,2026-03-01T09:00:01.000000+00:00\n")
    (known,) = scan([tmp_path], contents=cache, refresh=False).files
    assert known.contents is not None and known.contents.rows == 10
    (fresh,) = scan([tmp_path], contents=cache).files
    assert fresh.contents is not None and fresh.contents.rows == 11


def test_scanning_one_directory_keeps_what_is_known_of_another(tmp_path: Path) -> None:
    cache = ContentsCache()
    one, two = tmp_path / "one", tmp_path / "two"
    write_backup(one, sample_values(3))
    in_two = write_backup(two, sample_values(4))
    scan([one, two], contents=cache)
    scan([one], contents=cache)
    assert cache.cached(in_two) == ContentsCache().contents(in_two)


_lines = st.lists(
    st.one_of(
        st.just(""),  # a blank line
        st.just("x,1.5,2026-03-01T08:00:00.000000+00:00,GOOD,t"),
        st.just("x,1.5,2026-03-02T08:00:00.250000+00:00,GOOD,t"),
        st.just("x,1.5,not a time,GOOD,t"),
        st.just("short,line"),
        st.just('"a, quoted\nname",2,2026-03-03T00:00:00.000000+00:00,GOOD,t'),
        st.just("y,2,1999-12-31T23:59:59.999999+00:00,GOOD,t"),
    ),
    max_size=12,
)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=_lines, more=_lines, tail=st.sampled_from(["", "x,1,2026-03-04T00:00:00.000000+00:00"]))
def test_rows_and_range_are_the_same_read_in_one_go_or_record_by_record(
    tmp_path: Path, first: list[str], more: list[str], tail: str
) -> None:
    """Files of plain lines are read in C, others record by record; both must give the same answer,
    also for a file read again after it grew, with a last line not yet whole."""
    path = tmp_path / "backup_20260301_080000.csv"
    header = ",".join(BACKUP_HEADER) + "\n"
    path.write_text(header + "".join(line + "\n" for line in first), encoding="utf-8")
    cache = ContentsCache()
    cache.contents(path)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in more) + tail)
    grown = cache.contents(path)

    rows, stamps = 0, []
    with open(path, "rb") as handle:
        _kind, offset = read_header(handle)
        for record in records(handle, offset=offset, complete_only=True):
            rows += 1
            with contextlib.suppress(IndexError, ValueError):
                stamps.append(parse_timestamp(record.fields[TIMESTAMP_FIELD]))
    assert (grown.rows, grown.first, grown.last) == (
        rows,
        min(stamps, default=None),
        max(stamps, default=None),
    )
