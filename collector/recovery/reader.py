"""Reading backup and rejected CSV files back: header check, records with their line numbers, rows.

The files are written by :mod:`collector.backup`; this module is its inverse. Every record keeps
the physical line it starts on (a quoted tag name may span lines) and the byte offset where it
ends, so a damaged line can be reported by number and a reader can resume where it stopped.

The CSV cannot say whether a value was text or a number. The rule, :func:`parse_value`: an empty
field is no value; a field spelled exactly as :func:`collector.backup.format_value` spells an int
or a float (``42``, ``-7``, ``12.5``, ``1e+20``, ``nan``, ``inf``) is that number; anything else is
text. So a text value that happens to be spelled like a number comes back as the number, and an
empty text value comes back as no value; ``docs/operations.md`` says what that means in the table.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO, NamedTuple

from collector.backup import BACKUP_HEADER, REJECTED_HEADER
from collector.model import TagScalar, TagValue, parse_timestamp, validation_error

DAMAGED_CODE = "DAMAGED"
"""The error code of a line that could not be read back as a row."""

_INTEGER = re.compile(r"-?[0-9]+\Z")


class FileKind(StrEnum):
    BACKUP = "backup"
    REJECTED = "rejected"


HEADERS: dict[tuple[str, ...], FileKind] = {
    tuple(BACKUP_HEADER): FileKind.BACKUP,
    tuple(REJECTED_HEADER): FileKind.REJECTED,
}


class NotABackupFile(ValueError):
    """The file does not start with a backup or rejected header."""


def parse_value(text: str) -> TagScalar:
    """The value a backup CSV field stands for; see the module docstring for the rule."""
    if not text:
        return None
    if _INTEGER.match(text):
        try:
            integer = int(text)
        except ValueError:  # more digits than Python converts; it can only have been text
            return text
        return integer if str(integer) == text else text
    try:
        number = float(text)
    except ValueError:
        return text
    return number if repr(number) == text else text


class Record(NamedTuple):
    """One CSV record: its fields, the lines it spans and the byte offset just after it."""

    line: int
    end_line: int
    end_offset: int
    fields: list[str]
    problem: str | None
    """Set when the record could not even be split into fields (bad UTF-8, an oversized field)."""


class Row(NamedTuple):
    """A record read back as a value, with what is needed to report it."""

    line: int
    value: TagValue
    fields: list[str]


class Damaged(NamedTuple):
    """A record that cannot be a row, and why."""

    line: int
    end_line: int
    fields: list[str]
    reason: str

    def where(self) -> str:
        return f"line {self.line}" if self.end_line == self.line else f"lines {self.line}-{self.end_line}"


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


class _Lines:
    """Iterates the lines of a binary file as text, counting bytes and noting undecodable lines.

    The csv reader pulls exactly the lines of one record before it returns it, so after each
    record ``offset`` is where the record ends.
    """

    def __init__(self, handle: BinaryIO, offset: int, line: int, complete_only: bool) -> None:
        self._handle = handle
        self.offset = offset
        self.line = line
        self._complete_only = complete_only
        self.bad_lines: list[int] = []

    def __iter__(self) -> Iterator[str]:
        for raw in self._handle:
            if self._complete_only and not raw.endswith(b"\n"):
                return  # a record still being appended; read it next time
            self.offset += len(raw)
            self.line += 1
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                self.bad_lines.append(self.line)
                yield raw.decode("utf-8", errors="replace")


def read_header(handle: BinaryIO) -> tuple[FileKind, int]:
    """Check the first line; return the file's kind and the byte offset of its first record.

    Raises :class:`NotABackupFile`.
    """
    first = handle.readline()
    if not first:
        raise NotABackupFile("the file is empty")
    text = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    fields = tuple(next(csv.reader([text]), []))
    kind = HEADERS.get(fields)
    if kind is None:
        shown = text if len(text) <= 120 else text[:117] + "..."
        raise NotABackupFile(
            f"not a backup file: the first line is {shown!r}, expected {','.join(BACKUP_HEADER)!r}"
        )
    return kind, len(first)


def records(handle: BinaryIO, *, offset: int, line: int = 1, complete_only: bool = False) -> Iterator[Record]:
    """The records after byte ``offset`` (which follows physical line ``line``).

    With ``complete_only`` the reading stops before a last line that has no line end yet, so a
    file that is still being appended to is read only as far as it is whole.
    """
    handle.seek(offset)
    lines = _Lines(handle, offset, line, complete_only)
    reader = csv.reader(lines, strict=False)
    while True:
        start = lines.line + 1
        seen_bad = len(lines.bad_lines)
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Record(start, lines.line, lines.offset, [], f"cannot split into fields: {exc}")
            continue
        problem = None
        if len(lines.bad_lines) > seen_bad:
            problem = "not valid UTF-8"
        if fields or problem:  # csv yields [] for a blank line; there is nothing to replay in it
            yield Record(start, lines.line, lines.offset, fields, problem)


def parse_record(record: Record, kind: FileKind) -> Row | Damaged:
    """Read a record as a value, or say why it cannot be one."""
    fields = record.fields
    if record.problem is not None:
        return Damaged(record.line, record.end_line, fields, record.problem)
    expected = len(BACKUP_HEADER) if kind is FileKind.BACKUP else len(REJECTED_HEADER)
    if len(fields) != expected:
        return Damaged(
            record.line, record.end_line, fields, f"expected {expected} fields, found {len(fields)}"
        )
    name, value_text, stamp_text, quality = fields[0], fields[1], fields[2], fields[3]
    try:
        stamp = parse_timestamp(stamp_text)
    except ValueError:
        return Damaged(record.line, record.end_line, fields, f"timestamp {stamp_text!r} is not ISO 8601")
    value = parse_value(value_text)
    problem = validation_error(name, value, quality)
    if problem is not None:
        return Damaged(record.line, record.end_line, fields, problem)
    return Row(record.line, TagValue(name, value, stamp, quality), fields)


def chunks(
    handle: BinaryIO, kind: FileKind, batch_size: int, *, offset: int, line: int = 1
) -> Iterator[Chunk]:
    """The file's rows in chunks of ``batch_size``; each chunk also carries the damaged records
    found since the previous one, and where it ends (so a stopped replay can resume after it)."""
    chunk = Chunk(end_line=line, end_offset=offset)
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
