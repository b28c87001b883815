"""How records sit in a segment file, and how a segment is read back, damage included.

A segment starts with an 8-byte file header that names the format. Each record is

    magic (4) | payload length (u32) | CRC-32 (u32) | first sequence (u64) | value count (u32) | payload

little-endian; the CRC covers the sequence number, the count and the payload, so a record whose
header or body was torn or flipped is never taken for data. The magic lets a reader find the next
whole record after a damaged one: it searches for the magic and accepts a candidate only if its
checksum matches (a false match is a one-in-four-billion event per candidate).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import StrEnum

SEGMENT_HEADER = b"PLCWAL1\n"
RECORD_MAGIC = b"\xd7WAL"
_HEADER = struct.Struct("<4sIIQI")
RECORD_HEADER_SIZE = _HEADER.size
_CHECKED = struct.Struct("<QI")
MAX_PAYLOAD = 64 * 1024 * 1024
"""No poll batch comes near this; a larger length field is damage, not data."""


def frame(first_seq: int, count: int, payload: bytes) -> bytes:
    """One record, ready to append."""
    checked = _CHECKED.pack(first_seq, count)
    crc = zlib.crc32(payload, zlib.crc32(checked))
    return _HEADER.pack(RECORD_MAGIC, len(payload), crc, first_seq, count) + payload


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Where one whole record lies in its segment, and which values it holds."""

    offset: int
    end: int
    first_seq: int
    count: int

    @property
    def end_seq(self) -> int:
        return self.first_seq + self.count

    @property
    def payload_offset(self) -> int:
        return self.offset + RECORD_HEADER_SIZE


class DamageKind(StrEnum):
    TORN_TAIL = "torn-tail"
    """Bytes after the last whole record with no whole record after them: an append cut short."""
    CORRUPT = "corrupt"
    """Bytes that are not a whole record, with whole records after them."""
    BAD_HEADER = "bad-header"
    """The file does not start with the segment header: the whole file is unreadable."""


@dataclass(frozen=True, slots=True)
class Damage:
    """A byte range of a segment that holds no whole record."""

    offset: int
    end: int
    kind: DamageKind

    @property
    def length(self) -> int:
        return self.end - self.offset


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """What one segment holds: its whole records in order and the damaged ranges between them."""

    records: list[RecordRef]
    damage: list[Damage]
    size: int


def parse_at(data: bytes | memoryview, offset: int) -> RecordRef | None:
    """The whole record that starts at ``offset``, or None if there is none."""
    end_of_header = offset + RECORD_HEADER_SIZE
    if end_of_header > len(data):
        return None
    magic, length, crc, first_seq, count = _HEADER.unpack_from(data, offset)
    if magic != RECORD_MAGIC or length > MAX_PAYLOAD:
        return None
    end = end_of_header + length
    if end > len(data):
        return None
    checked = zlib.crc32(data[offset + 12 : end_of_header])
    if zlib.crc32(data[end_of_header:end], checked) != crc:
        return None
    return RecordRef(offset, end, first_seq, count)


def _next_record(data: bytes, start: int) -> int | None:
    position = data.find(RECORD_MAGIC, start)
    while position != -1:
        if parse_at(data, position) is not None:
            return position
        position = data.find(RECORD_MAGIC, position + 1)
    return None


def scan_segment(data: bytes) -> SegmentScan:
    """Every whole record of a segment file's bytes, and every damaged range."""
    if not data.startswith(SEGMENT_HEADER):
        if SEGMENT_HEADER.startswith(data):
            # Shorter than the header and a prefix of it (or empty): created, then cut before the header
            # landed, or emptied by a file system that lost its data after a power cut.
            return SegmentScan([], [Damage(0, len(data), DamageKind.TORN_TAIL)], len(data))
        return SegmentScan([], [Damage(0, len(data), DamageKind.BAD_HEADER)], len(data))
    records: list[RecordRef] = []
    damage: list[Damage] = []
    position = len(SEGMENT_HEADER)
    size = len(data)
    while position < size:
        record = parse_at(data, position)
        if record is not None:
            records.append(record)
            position = record.end
            continue
        resume = _next_record(data, position + 1)
        if resume is None:
            damage.append(Damage(position, size, DamageKind.TORN_TAIL))
            break
        damage.append(Damage(position, resume, DamageKind.CORRUPT))
        position = resume
    return SegmentScan(records, damage, size)


def payload_of(data: bytes | memoryview, record: RecordRef) -> bytes:
    return bytes(data[record.payload_offset : record.end])
