"""Records and payloads: what goes in comes out, and damage is found, never taken for data."""

from __future__ import annotations

import json
import math
import pickle
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.model import TagValue
from collector.wal.codec import PayloadError, decode_values, encode_values
from collector.wal.framing import SEGMENT_HEADER, DamageKind, frame, payload_of, scan_segment
from tests.wal_support import poll

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
)
stamps = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
values = st.builds(
    TagValue, st.text(min_size=1, max_size=100), scalars, stamps, st.sampled_from(["GOOD", "BAD"])
)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@given(st.lists(values, min_size=1, max_size=30))
def test_a_batch_round_trips_exactly(batch: list[TagValue]) -> None:
    decoded = decode_values(encode_values(batch), len(batch))
    assert len(decoded) == len(batch)
    for before, after in zip(batch, decoded, strict=True):
        assert after.tag_name == before.tag_name
        assert _same(before.value, after.value), (before.value, after.value)
        assert after.timestamp == before.timestamp and after.timestamp.tzinfo is not None
        assert after.quality == before.quality


def test_a_payload_that_disagrees_with_its_count_is_refused() -> None:
    payload = encode_values(poll(1, 5))
    with pytest.raises(PayloadError, match="says 6 values"):
        decode_values(payload, 6)
    with pytest.raises(PayloadError):
        decode_values(b'{"not": "a batch"}', 1)


def _segment(count: int) -> tuple[bytes, list[int]]:
    data = bytearray(SEGMENT_HEADER)
    ends = []
    for index in range(count):
        data += frame(index * 10, 10, encode_values(poll(index)))
        ends.append(len(data))
    return bytes(data), ends


def test_whole_records_read_back_with_their_sequence_numbers() -> None:
    data, ends = _segment(5)
    scan = scan_segment(data)
    assert not scan.damage
    assert [r.first_seq for r in scan.records] == [0, 10, 20, 30, 40]
    assert [r.end for r in scan.records] == ends
    assert decode_values(payload_of(data, scan.records[3]), 10) == poll(3)


def test_a_cut_anywhere_in_the_last_record_is_a_torn_tail() -> None:
    data, ends = _segment(3)
    for cut in range(ends[1] + 1, ends[2]):
        scan = scan_segment(data[:cut])
        assert [r.first_seq for r in scan.records] == [0, 10]
        assert [(d.offset, d.end, d.kind) for d in scan.damage] == [(ends[1], cut, DamageKind.TORN_TAIL)]


def test_a_flipped_byte_in_the_middle_costs_only_its_record() -> None:
    data, ends = _segment(4)
    for position in range(ends[0], ends[1]):
        damaged = bytearray(data)
        damaged[position] ^= 0x5A
        scan = scan_segment(bytes(damaged))
        assert [r.first_seq for r in scan.records] == [0, 20, 30], position
        assert [(d.offset, d.end, d.kind) for d in scan.damage] == [(ends[0], ends[1], DamageKind.CORRUPT)]


def test_a_file_without_the_segment_header_is_unreadable_whole() -> None:
    data, _ = _segment(2)
    scan = scan_segment(b"X" + data[1:])
    assert scan.records == []
    assert [d.kind for d in scan.damage] == [DamageKind.BAD_HEADER]
    # A header cut short is a file created just before a crash: torn, not foreign.
    assert [d.kind for d in scan_segment(SEGMENT_HEADER[:3]).damage] == [DamageKind.TORN_TAIL]
    assert [d.kind for d in scan_segment(b"").damage] == [DamageKind.TORN_TAIL]


def test_a_record_in_the_json_format_of_earlier_versions_is_still_read() -> None:
    stamp = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    micros = int((stamp - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
    payload = json.dumps([["A", "B", "C"], [1.5, "RUNNING", None], [micros] * 3, [2]]).encode()
    assert decode_values(payload, 3) == [
        TagValue("A", 1.5, stamp),
        TagValue("B", "RUNNING", stamp),
        TagValue("C", None, stamp, "BAD"),
    ]


def test_a_batch_with_several_timestamps_keeps_each_one() -> None:
    first, second = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, 0, 0, 1, 7, tzinfo=UTC)
    batch = [TagValue("A", 1, first), TagValue("B", 2, second), TagValue("A", 3, second)]
    assert decode_values(encode_values(batch), 3) == batch


class _Shell:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("a payload that calls a function",))


@pytest.mark.parametrize(
    "columns",
    [
        (("A",), (_Shell(),), 0, []),  # a global: refused before anything is called
        (("A",), (b"bytes",), 0, []),  # plain data, but not a value the collector holds
        ((1,), (1.0,), 0, []),  # a name that is not text
        (("A",), (1.0,), [1.5], []),  # a timestamp that is not an integer
    ],
)
def test_a_payload_holding_anything_but_the_four_columns_is_refused(columns: tuple[object, ...]) -> None:
    with pytest.raises(PayloadError):
        decode_values(pickle.dumps(columns, 5), 1)
