"""The contract every sink keeps, run against each one in tests/sink_harnesses.py.

What the writer relies on: every row of a batch is accounted for exactly once (written,
duplicate, or rejected with its index), values land in the column ``split_value`` chooses and come
back exact, timestamps keep their instant and microseconds, duplicates are skipped and counted
within and across batches, a bad row does not cost its batch the good rows, and several writer
threads can share one sink.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from collector.model import TagValue, split_value
from collector.sinks.base import WriteResult
from tests.sink_harnesses import HARNESSES, Harness, HarnessFactory, StoredRow

STAMP = datetime(2026, 11, 28, 21, 37, 59, 123456, tzinfo=UTC)

EDGE_VALUES: list[tuple[str, object]] = [
    ("float", 3.14159),
    ("float.tenth", 0.1),
    ("float.17digits", 0.30000000000000004),
    ("float.negative", -273.15),
    ("float.tiny", 1e-100),
    ("float.big", 1e125),
    ("float.too_big", 1e126),
    ("float.nan", float("nan")),
    ("float.inf", float("inf")),
    ("float.-inf", float("-inf")),
    ("int.zero", 0),
    ("int", 42),
    ("int.negative", -7),
    ("int.64bit", 2**63 - 1),
    ("int.past_64bit", 2**63),
    ("int.38digits", 10**38 - 1),
    ("int.-38digits", -(10**38 - 1)),
    ("int.39digits", 10**38),
    ("int.huge", 10**60 + 7),
    ("bool.true", True),
    ("bool.false", False),
    ("text", "RUNNING"),
    ("text.empty", ""),
    ("text.long", "x" * 4000),
    ("text.unicode", "온도 정상 ✓ 🌡 température"),
    ("text.csv", 'a,b;"quoted"\nnext line\r\n\ttab'),
    ("text.numeric_looking", "1e5"),
    ('name with "quotes"', 1.5),
    ("name,with,commas", 2.5),
    ("name with\nnewline", 3.5),
    ("name with 'apostrophe'", 4.5),
    ("이름.유니코드.🌡", 5.5),
    ("N" * 100, 6.5),
]


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    factory: HarnessFactory = request.param
    with factory(request, tmp_path) as built:
        yield built


def values(count: int, *, prefix: str = "T", stamp: datetime = STAMP) -> list[TagValue]:
    return [TagValue(f"{prefix}{index:04d}", float(index) + 0.25, stamp) for index in range(count)]


def assert_accounts(result: WriteResult, batch: Sequence[TagValue]) -> None:
    assert result.total == len(batch)
    indexes = [error.index for error in result.rejected]
    assert len(set(indexes)) == len(indexes)
    assert all(0 <= index < len(batch) for index in indexes)


def expected_row(value: TagValue, harness: Harness) -> StoredRow:
    number, text = split_value(value.value, max_integer=harness.max_integer)
    exact = None if number is None else Decimal(repr(number) if isinstance(number, float) else str(number))
    if text == "" and harness.empty_text_is_null:
        text = None
    return StoredRow(value.tag_name, exact, text, value.timestamp.astimezone(UTC), value.quality)


def by_key(rows: Sequence[StoredRow]) -> dict[tuple[str, datetime], StoredRow]:
    keyed = {(row.tag_name, row.timestamp): row for row in rows}
    assert len(keyed) == len(rows), "a key is stored twice"
    return keyed


def test_every_value_kind_and_edge_value_round_trips(harness: Harness) -> None:
    batch = [TagValue(name, value, STAMP) for name, value in EDGE_VALUES]
    batch.append(TagValue("bad.reading", None, STAMP, "BAD"))

    result = harness.sink.write(batch)

    assert_accounts(result, batch)
    assert (result.written, result.duplicates, result.rejected) == (len(batch), 0, [])
    stored = by_key(harness.stored())
    expected = by_key([expected_row(value, harness) for value in batch])
    assert stored == expected


def test_numbers_land_in_the_number_column_and_the_rest_in_text(harness: Harness) -> None:
    batch = [
        TagValue("n.float", 12.5, STAMP),
        TagValue("n.bool", True, STAMP),
        TagValue("t.nan", float("nan"), STAMP),
        TagValue("t.string", "ALARM", STAMP),
    ]
    harness.sink.write(batch)

    stored = {row.tag_name: row for row in harness.stored()}
    assert (stored["n.float"].number, stored["n.float"].text) == (Decimal("12.5"), None)
    assert (stored["n.bool"].number, stored["n.bool"].text) == (Decimal(1), None)
    assert (stored["t.nan"].number, stored["t.nan"].text) == (None, "nan")
    assert (stored["t.string"].number, stored["t.string"].text) == (None, "ALARM")


def test_timestamps_keep_their_instant_and_microseconds(harness: Harness) -> None:
    seoul = timezone(timedelta(hours=9))
    stamps = [
        datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 999999, tzinfo=UTC),
        datetime(2026, 6, 30, 23, 59, 59, 500000, tzinfo=UTC),
        datetime(2026, 3, 1, 8, 30, 0, 654321, tzinfo=seoul),
        datetime(1999, 12, 31, 23, 59, 59, 0, tzinfo=UTC),
    ]
    batch = [TagValue(f"clock.{index}", index, stamp) for index, stamp in enumerate(stamps)]

    result = harness.sink.write(batch)

    assert result.written == len(batch)
    stored = {row.tag_name: row.timestamp for row in harness.stored()}
    for value in batch:
        assert stored[value.tag_name] == value.timestamp
        assert stored[value.tag_name].microsecond == value.timestamp.astimezone(UTC).microsecond
        assert stored[value.tag_name].utcoffset() == timedelta(0)


def test_duplicates_within_a_batch_are_counted_and_the_first_is_kept(harness: Harness) -> None:
    later = STAMP + timedelta(microseconds=1)
    batch = [
        TagValue("dup", 1.0, STAMP),
        TagValue("other", 2.0, STAMP),
        TagValue("dup", 99.0, STAMP),  # same key as the first
        TagValue("dup", 3.0, later),  # one microsecond later: a different key
    ]

    result = harness.sink.write(batch)

    assert_accounts(result, batch)
    assert (result.written, result.duplicates, result.rejected) == (3, 1, [])
    stored = by_key(harness.stored())
    assert stored[("dup", STAMP)].number == Decimal("1.0")
    assert len(stored) == 3


def test_duplicates_across_batches_are_counted(harness: Harness) -> None:
    first = values(50)
    second = values(80)  # the first 50 again, then 30 new ones

    assert harness.sink.write(first).written == 50
    result = harness.sink.write(second)

    assert_accounts(result, second)
    assert (result.written, result.duplicates, result.rejected) == (30, 50, [])
    assert len(by_key(harness.stored())) == 80


def test_a_repeated_batch_lands_entirely_as_duplicates(harness: Harness) -> None:
    # What a retry after a lost acknowledgement looks like to the sink.
    batch = values(20)
    harness.sink.write(batch)

    result = harness.sink.write(batch)

    assert (result.written, result.duplicates, result.rejected) == (0, 20, [])
    assert len(harness.stored()) == 20


def test_bad_rows_are_rejected_and_the_rest_of_the_batch_is_written(harness: Harness) -> None:
    harness.sink.write([TagValue("T0003", 0.0, STAMP)])  # makes row 3 below a duplicate
    batch = values(20)
    batch[0] = TagValue("N" * 101, 1.0, STAMP)  # tag name longer than the column
    batch[7] = TagValue("T0007", "y" * 4001, STAMP)  # text longer than the column
    batch[19] = TagValue("N" * 150, 2.0, STAMP)

    result = harness.sink.write(batch)

    assert_accounts(result, batch)
    assert [error.index for error in result.rejected] == [0, 7, 19]
    assert all(error.code and error.message for error in result.rejected)
    assert (result.written, result.duplicates) == (16, 1)
    stored = by_key(harness.stored())
    good = [value for index, value in enumerate(batch) if index not in {0, 3, 7, 19}]
    for value in good:
        assert stored[(value.tag_name, value.timestamp)] == expected_row(value, harness)
    assert len(stored) == 17


def test_a_batch_of_only_bad_rows_writes_nothing(harness: Harness) -> None:
    batch = [TagValue("N" * (101 + index), 1.0, STAMP) for index in range(3)]

    result = harness.sink.write(batch)

    assert_accounts(result, batch)
    assert (result.written, result.duplicates) == (0, 0)
    assert sorted(error.index for error in result.rejected) == [0, 1, 2]
    assert harness.stored() == []


def test_the_empty_batch_writes_nothing(harness: Harness) -> None:
    result = harness.sink.write([])

    assert (result.written, result.duplicates, result.rejected) == (0, 0, [])
    assert harness.stored() == []


def test_a_full_batch_of_500_is_written(harness: Harness) -> None:
    batch = [
        TagValue(f"G{index // 100:02d}.T{index:04d}", value, STAMP + timedelta(microseconds=index))
        for index, value in enumerate(([1.5, -2, "IDLE", True, None, 10**40, float("inf")] * 72)[:500])
    ]

    result = harness.sink.write(batch)

    assert_accounts(result, batch)
    assert (result.written, result.duplicates, result.rejected) == (500, 0, [])
    assert by_key(harness.stored()) == by_key([expected_row(v, harness) for v in batch])


def test_several_threads_share_one_sink(harness: Harness) -> None:
    results: list[WriteResult] = []
    lock = threading.Lock()

    def writer(thread: int) -> None:
        for batch_number in range(5):
            batch = values(100, prefix=f"W{thread}.{batch_number}.")
            result = harness.sink.write(batch)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=writer, args=(n,), name=f"contract-writer-{n}") for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)

    assert sum(result.written for result in results) == 2000
    assert len(by_key(harness.stored())) == 2000


def test_ping_succeeds_on_a_healthy_sink_and_close_is_idempotent(harness: Harness) -> None:
    harness.sink.ping()
    assert harness.sink.system_name
    assert harness.sink.table
    harness.sink.close()
    harness.sink.close()
