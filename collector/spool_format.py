"""The backup and rejected CSV format, in one place: file names, headers, how a value is spelled
and how a file is read back.

The writer side (:mod:`collector.backup`) writes files in this format, the recovery side
(:mod:`collector.recovery`) and the inventory (:mod:`collector.inventory`) read them, and the
simulator's ledger spells values the same way; they all import this module, which imports only
:mod:`collector.model`.

A file is ``<kind>_YYYYMMDD_HHMMSS.csv`` (UTC; a name already taken gets ``_1``, ``_2``), starting
with a header line. Every record keeps the physical line it starts on (a quoted tag name may span
lines) and the byte offset where it ends, so a damaged line can be reported by number and a reader
can resume where it stopped.

The CSV cannot say whether a value was text or a number. The rule, :func:`parse_value`: an empty
field is no value; a field spelled exactly as :func:`format_value` spells an int or a float (``42``,
``-7``, ``12.5``, ``1e+20``, ``nan``, ``inf``) is that number; anything else is text. So a text
value that happens to be spelled like a number comes back as the number, and an empty text value
comes back as no value; ``docs/operations.md`` says what that means in the table. Values are
written exactly as they are, including text that starts with ``=``, ``+``, ``-`` or ``@``: replay
needs them back unchanged (see ``docs/security.md`` for viewing such files safely).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from enum import StrEnum
from itertools import repeat
from typing import BinaryIO, NamedTuple

from collector.model import (
    InvalidValue,
    TagScalar,
    TagValue,
    format_timestamp,
    parse_timestamp,
    validation_error,
)


class SpoolKind(StrEnum):
    """Which file a row is in: values kept for replay, or rows refused with a reason."""

    BACKUP = "backup"
    REJECTED = "rejected"

    @property
    def header(self) -> tuple[str, ...]:
        return BACKUP_HEADER if self is SpoolKind.BACKUP else REJECTED_HEADER


BACKUP_PREFIX = SpoolKind.BACKUP
REJECTED_PREFIX = SpoolKind.REJECTED
BACKUP_HEADER = ("tag_name", "tag_value", "timestamp", "quality", "insertion_attempt_time")
REJECTED_HEADER = (*BACKUP_HEADER, "error_code", "reason")
TIMESTAMP_FIELD = 2
"""The position of the collection timestamp in both headers."""

HEADERS: dict[tuple[str, ...], SpoolKind] = {
    BACKUP_HEADER: SpoolKind.BACKUP,
    REJECTED_HEADER: SpoolKind.REJECTED,
}

FILE_PATTERN = re.compile(
    rf"^(?P<kind>{SpoolKind.BACKUP.value}|{SpoolKind.REJECTED.value})_\d{{8}}_\d{{6}}(?:_\d+)?\.csv$"
)
"""The names the service gives its files; anything else in a backup directory is not one of them."""

_INTEGER = re.compile(r"-?[0-9]+\Z")


def file_name(kind: SpoolKind, created: datetime, suffix: int = 0) -> str:
    """The name of a file created at ``created`` (UTC); ``suffix`` tells apart names already taken."""
    base = f"{kind.value}_{created.strftime('%Y%m%d_%H%M%S')}"
    return f"{base}.csv" if suffix == 0 else f"{base}_{suffix}.csv"


def kind_of(name: str) -> SpoolKind | None:
    """The kind a file name says, or None if the service did not name it."""
    match = FILE_PATTERN.match(name)
    return SpoolKind(match["kind"]) if match else None


# ---------------------------------------------------------------------- writing


def format_value(value: object) -> str:
    """The CSV spelling of a tag value: empty for none, 1/0 for booleans, the exact repr of a float."""
    if value is None:
        return ""
    if value is True:
        return "1"
    if value is False:
        return "0"
    if type(value) is float:
        return repr(value)
    return str(value)


def backup_rows(batch: Iterable[TagValue], attempt_time: datetime) -> list[tuple[str, ...]]:
    """Rows for the backup CSV. The values of one poll share their timestamp, so each distinct
    timestamp is formatted once per batch: formatting it for every value was most of what spilling
    a value cost (the spill guard writes at the rate the database falls short)."""
    attempt = format_timestamp(attempt_time)
    stamps: dict[datetime, str] = {}
    rows: list[tuple[str, ...]] = []
    append = rows.append
    for name, value, stamp, quality in batch:
        text = stamps.get(stamp)
        if text is None:
            text = stamps[stamp] = format_timestamp(stamp)
        append((name, repr(value) if type(value) is float else format_value(value), text, quality, attempt))
    return rows


class EncodedRows:
    """Rows already encoded as the bytes a file holds (:func:`backup_payload`), with their count."""

    __slots__ = ("count", "payload")

    def __init__(self, payload: bytes, count: int) -> None:
        self.payload = payload
        self.count = count

    def __len__(self) -> int:
        return self.count


def backup_payload(batch: Sequence[TagValue], attempt_time: datetime) -> EncodedRows:
    """The backup CSV's bytes for ``batch``, byte for byte what :func:`encode_rows` writes for
    :func:`backup_rows`, built column by column in one go.

    This is what the spill guard pays for every value the writers could not take, so the per-value
    work is kept to C-level joins and maps: the columns come from one ``zip``, each distinct
    timestamp is formatted once, every value is spelled by ``repr`` and only the few that are not
    numbers are spelled again. A batch that needs quoting (a comma, quote or line break in a name or
    a text) is left to :func:`encode_rows`.
    """
    if not batch:
        return EncodedRows(b"", 0)
    names, values, stamps, qualities = zip(*batch, strict=True)
    texts = {stamp: format_timestamp(stamp) for stamp in set(stamps)}
    try:
        spelled = list(map(repr, values))
    except ValueError:  # an integer too long to spell: the csv module's way says so
        return EncodedRows(encode_rows(backup_rows(batch, attempt_time)), len(batch))
    for index in [i for i, kind in enumerate(map(type, values)) if kind is not float and kind is not int]:
        spelled[index] = format_value(values[index])
    attempt = format_timestamp(attempt_time)
    lines = map(",".join, zip(names, spelled, map(texts.__getitem__, stamps), qualities, repeat(attempt)))
    text = "\n".join(lines) + "\n"
    count = len(batch)
    if text.count(",") == 4 * count and text.count("\n") == count and '"' not in text and "\r" not in text:
        return EncodedRows(text.encode("utf-8"), count)
    return EncodedRows(encode_rows(backup_rows(batch, attempt_time)), count)


def rejected_rows(
    items: Iterable[tuple[TagValue, str, str]], attempt_time: datetime
) -> list[tuple[str, ...]]:
    """Rows for the rejected CSV from (value, error_code, reason) triples."""
    attempt = format_timestamp(attempt_time)
    return [
        (
            value.tag_name,
            format_value(value.value),
            format_timestamp(value.timestamp),
            value.quality,
            attempt,
            code,
            reason,
        )
        for value, code, reason in items
    ]


def invalid_rows(items: Iterable[InvalidValue], attempt_time: datetime) -> list[tuple[str, ...]]:
    """Rows for the rejected CSV from readings that failed validation at intake; whatever was given
    is written in a readable form, since it may not be a string or a datetime at all."""
    attempt = format_timestamp(attempt_time)
    rows: list[tuple[str, ...]] = []
    for item in items:
        stamp = item.timestamp
        stamp_text = format_timestamp(stamp) if isinstance(stamp, datetime) else repr(stamp)
        name = item.tag_name if isinstance(item.tag_name, str) else repr(item.tag_name)
        value = item.value
        value_text = (
            format_value(value) if value is None or type(value) in (int, float, str, bool) else repr(value)
        )
        rows.append((name, value_text, stamp_text, str(item.quality), attempt, "INVALID", item.reason))
    return rows


def encode_rows(rows: Sequence[Sequence[str]]) -> bytes:
    """Rows as the bytes a file holds, exactly as the csv module writes them: it quotes commas,
    quotes and line breaks in tag names and text values; "\\n" line ends keep the files the same
    on every platform.

    Almost every batch has nothing to quote, and then a plain join gives the same bytes at a fifth
    of the csv writer's cost: the whole batch is joined, and kept only if it holds exactly the commas
    and line ends the joins put there and no quote or carriage return; otherwise the csv module
    writes it.
    """
    try:
        text = "\n".join([",".join(row) for row in rows]) + "\n"
    except TypeError:  # a field that is not text: the csv module spells it
        text = ""
    else:
        separators = sum(len(row) - 1 for row in rows)
        if (
            text.count(",") == separators
            and text.count("\n") == len(rows)
            and '"' not in text
            and "\r" not in text
            and all(len(row) > 1 for row in rows)  # the csv module quotes a row of one empty field
        ):
            return text.encode("utf-8")
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


# ---------------------------------------------------------------------- reading


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


def read_header(handle: BinaryIO) -> tuple[SpoolKind, int]:
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
        # What the line holds is not shown: the file may be anything, and this message is printed.
        raise NotABackupFile(
            f"not a backup file: the first line is not {','.join(BACKUP_HEADER)!r}"
            " (or the rejected files' header)"
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


def parse_record(record: Record, kind: SpoolKind) -> Row | Damaged:
    """Read a record as a value, or say why it cannot be one."""
    fields = record.fields
    if record.problem is not None:
        return Damaged(record.line, record.end_line, fields, record.problem)
    expected = len(kind.header)
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


# ---------------------------------------------------------------------- viewing

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may take as the start of a formula (OWASP's list for CSV injection)."""


def spreadsheet_safe(field: str) -> str:
    """``field`` as a spreadsheet shows it as text: one that a spreadsheet could run as a formula
    gets a leading apostrophe; a number (``-7``, ``-1.5``) stays a number. For viewing only: the
    files themselves keep every value exactly, since replay needs them back unchanged."""
    if not field.startswith(FORMULA_STARTS):
        return field
    if isinstance(parse_value(field), int | float):
        return field
    return "'" + field
