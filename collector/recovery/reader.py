"""Reading a backup file for replay: its rows in batches, with the damaged records met on the way.

The format itself (header, records, how a field becomes a value) is :mod:`collector.spool_format`;
this module groups its records into the chunks a replay writes one at a time, each with the place
where it ends, so a stopped replay can resume after the last chunk it settled.

Almost every block of a backup file is plain: no quotes, no carriage return, no NUL, valid UTF-8,
which is every row the service writes for a plant's names and numbers. Such a block is split into
lines and fields by ``str.split`` in C, each distinct timestamp is parsed once and a tag name found
valid is not checked again, which is a fraction of the csv module's cost per row (replay into a
fast database is limited by its reading, docs/benchmarks.md). Anything else is read record by record
through the csv module, from the first block that needs it; both ways give the same rows, damaged
records, line numbers and offsets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from collector.model import MAX_TEXT_BYTES, TagValue, parse_timestamp, validation_error
from collector.spool_format import Damaged, Record, Row, SpoolKind, parse_record, parse_value, records

DAMAGED_CODE = "DAMAGED"
"""The error code of a line that could not be read back as a row."""

BLOCK_BYTES = 1024 * 1024
BACKUP_FIELDS = 5
_UNSAFE = (b'"', b"\r", b"\x00")
"""What only the csv module reads right: quoting, the other line end, and NUL (which it refuses)."""
_QUALITIES = frozenset({"GOOD", "BAD"})
_PLAIN_VALUES = frozenset({float, int, type(None)})
_SHORT_TEXT = MAX_TEXT_BYTES // 4
_MAX_KNOWN_NAMES = 100_000
_new_tuple = tuple.__new__
_UNSEEN = object()


@dataclass(slots=True)
class Chunk:
    """Up to ``batch_size`` rows and the damaged records met while collecting them."""

    rows: list[Row] = field(default_factory=list)
    damaged: list[Damaged] = field(default_factory=list)
    end_line: int = 1
    end_offset: int = 0

    @property
    def records(self) -> int:
        return len(self.rows) + len(self.damaged)


def chunks(
    handle: BinaryIO, kind: SpoolKind, batch_size: int, *, offset: int, line: int = 1
) -> Iterator[Chunk]:
    """The file's rows in chunks of ``batch_size``; each chunk also carries the damaged records
    found since the previous one, and where it ends (so a stopped replay can resume after it)."""
    chunk = Chunk(end_line=line, end_offset=offset)
    if kind is SpoolKind.BACKUP:
        plain = _PlainBlocks(handle, offset, line)
        yield from plain.chunks(chunk, batch_size)
        chunk = plain.partial
        if plain.done:
            if chunk.records:
                yield chunk
            return
        offset, line = plain.offset, plain.line
    for record in records(handle, offset=offset, line=line):
        parsed = parse_record(record, kind)
        if isinstance(parsed, Row):
            chunk.rows.append(parsed)
        else:
            chunk.damaged.append(parsed)
        chunk.end_line, chunk.end_offset = record.end_line, record.end_offset
        if len(chunk.rows) >= batch_size:
            yield chunk
            chunk = Chunk(end_line=chunk.end_line, end_offset=chunk.end_offset)
    if chunk.records:
        yield chunk


class _PlainBlocks:
    """Reads a backup file block by block while the blocks are plain (see the module doc), turning
    each line into a row exactly as :func:`parse_record` would. Stops at the first block that is
    not plain, leaving ``offset`` and ``line`` where the record-by-record reading takes over;
    ``done`` once the whole file was read."""

    def __init__(self, handle: BinaryIO, offset: int, line: int) -> None:
        self._handle = handle
        self.offset = offset
        self.line = line
        self.done = False
        self.partial = Chunk(end_line=line, end_offset=offset)
        self._names: set[str] = set()

    def _blocks(self) -> Iterator[tuple[str, bool, bool]]:
        """(text of whole lines, whether it is ASCII, whether it ends the file)."""
        handle = self._handle
        handle.seek(self.offset)
        pending = b""
        while True:
            block = handle.read(BLOCK_BYTES)
            data = pending + block
            cut = (
                len(data) if not block else data.rfind(b"\n") + 1
            )  # at the end, a last line with no line end
            if block and cut == 0:
                pending = data
                continue
            whole, pending = data[:cut], data[cut:]
            if not whole:
                self.done = True
                return
            text = None if any(mark in whole for mark in _UNSAFE) else _decoded(whole)
            if text is None:
                return
            yield text, whole.isascii(), not block
            self.line += whole.count(b"\n") + (0 if whole.endswith(b"\n") else 1)
            self.offset += cut
            if not block:
                self.done = True
                return

    def chunks(self, chunk: Chunk, batch_size: int) -> Iterator[Chunk]:
        """Fills ``chunk`` and the ones after it with the plain blocks' records, yielding each
        that is full; the last, not full, is left in ``partial``."""
        self.partial = chunk
        for text, ascii_only, _last in self._blocks():
            # Per block, so they stay small: a poll's values share a timestamp, and many values
            # (states, counters, set points) repeat.
            stamps: dict[str, datetime | None] = {}
            values: dict[str, object] = {}
            lines = text.split("\n")
            ended = text.endswith("\n")
            if ended:
                lines.pop()
            # Each line's bytes with its line end.
            sizes = [
                size + 1 for size in map(len, lines if ascii_only else (t.encode("utf-8") for t in lines))
            ]
            if not ended:
                sizes[-1] -= 1  # the file's last line, with no line end
            line, offset = self.line, self.offset
            rows, damaged = chunk.rows, chunk.damaged
            for content, size in zip(lines, sizes, strict=True):
                line += 1
                offset += size
                if not content:
                    continue  # a blank line holds nothing to replay (as the csv module reads it)
                fields = content.split(",")
                parsed: Row | Damaged | None = None
                if len(fields) == BACKUP_FIELDS:
                    parsed = self._row(fields, line, stamps, values)
                if parsed is None:
                    # Anything unusual is judged by the one rule for every record.
                    parsed = parse_record(Record(line, line, offset, fields, None), SpoolKind.BACKUP)
                if type(parsed) is Row:
                    rows.append(parsed)
                else:
                    damaged.append(parsed)  # type: ignore[arg-type]
                chunk.end_line, chunk.end_offset = line, offset
                if len(rows) >= batch_size:
                    yield chunk
                    chunk = Chunk(end_line=line, end_offset=offset)
                    rows, damaged = chunk.rows, chunk.damaged
            self.partial = chunk

    def _row(
        self, fields: list[str], line: int, stamps: dict[str, datetime | None], values: dict[str, object]
    ) -> Row | None:
        """The row of five plain fields, or None for :func:`parse_record` to say what is wrong."""
        name, value_text, stamp_text, quality, _ = fields
        stamp = stamps.get(stamp_text, _UNSEEN)
        if stamp is _UNSEEN:
            stamp = stamps[stamp_text] = _timestamp(stamp_text)
        if stamp is None:
            return None
        value = values.get(value_text, _UNSEEN)
        if value is _UNSEEN:
            value = values[value_text] = parse_value(value_text)
        kind = type(value)
        names = self._names
        if (
            name in names
            and quality in _QUALITIES
            and (kind in _PLAIN_VALUES or (kind is str and len(value) <= _SHORT_TEXT))  # type: ignore[arg-type]
        ):
            return _new_tuple(Row, (line, _new_tuple(TagValue, (name, value, stamp, quality)), fields))
        if validation_error(name, value, quality) is not None:
            return None
        if len(names) < _MAX_KNOWN_NAMES:
            names.add(name)
        return Row(line, TagValue(name, value, stamp, quality), fields)  # type: ignore[arg-type]


def _timestamp(text: str) -> datetime | None:
    """:func:`parse_timestamp`, or None; the service's own spelling (UTC, ``+00:00``) directly."""
    if text.endswith("+00:00"):
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:
            return None
        if stamp.tzinfo is UTC:
            return stamp
    try:
        return parse_timestamp(text)
    except ValueError:
        return None


def _decoded(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
