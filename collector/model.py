"""The values that flow through the collector, and the rules every part applies to them.

Nothing here imports any other part of the project: the buffer, the writer, the sinks and the
sources all speak these types.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

MAX_TAG_NAME_LENGTH = 100
"""FR-013: ``tag_name`` is VARCHAR2(100)."""

MAX_TEXT_BYTES = 4000
"""A text value is at most 4000 bytes in UTF-8; a longer one is rejected, never truncated.

Bytes, not characters: that is what Oracle's VARCHAR2 holds with ``MAX_STRING_SIZE=STANDARD`` (the
default), whatever the column's length semantics, so 2 500 characters of ``é`` (5 000 bytes) do not
fit. The rule is the same for every database, so a value accepted is one every supported table can
store (PostgreSQL's VARCHAR(4000) and SQLite's check count characters, and 4 000 bytes are never
more than 4 000 characters)."""

MAX_TEXT_LENGTH = MAX_TEXT_BYTES
"""The text column's declared size in the DDL the collector prints."""

# Oracle NUMBER holds 38 significant digits and magnitudes from 1e-130 up to (not including) 1e126.
# Values outside are stored in the text column so that nothing is silently rounded, and so that the
# driver never refuses a value on the client (which would fail the whole batch); the same rule
# applies to every sink so that a value lands in the same column whatever the database.
NUMBER_MAX_DIGITS = 38
NUMBER_MAX_MAGNITUDE = 1e126
NUMBER_MIN_MAGNITUDE = 1e-130


class Quality(StrEnum):
    """FR-017: GOOD for a successful poll, BAD for a polling error."""

    GOOD = "GOOD"
    BAD = "BAD"


TagScalar = int | float | str | bool | None
"""What a tag value may be. ``None`` is the value of a BAD reading that produced nothing."""


class TagValue(NamedTuple):
    """One tag reading as the buffer holds it (the specification's BufferedTagValue).

    A NamedTuple rather than a dataclass: it is created for every value on the hot path, and a
    tuple is the cheapest immutable record Python has. ``timestamp`` is the collection time from the
    polling engine (FR-018), timezone-aware UTC once it has passed intake.
    """

    tag_name: str
    value: TagScalar
    timestamp: datetime
    quality: str = Quality.GOOD


@dataclass(slots=True)
class PollingData:
    """What the polling engine puts on its DataQueue: one poll of one group.

    ``values`` maps tag name to the value read; ``errors`` maps tag name to the read error for the
    tags that could not be read, which become quality BAD with no value (FR-017).
    """

    group_name: str
    timestamp: datetime
    values: Mapping[str, object] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values) + len(self.errors)


class InvalidValue(NamedTuple):
    """A reading that failed validation at intake, kept with the reason for the rejected CSV."""

    tag_name: object
    value: object
    timestamp: object
    quality: object
    reason: str


def to_utc(timestamp: datetime, *, naive_is_utc: bool = True) -> datetime:
    """Return ``timestamp`` as an aware UTC datetime, keeping microseconds.

    A naive datetime is taken as UTC (the polling engine stamps in UTC), or as the machine's local
    time when ``naive_is_utc`` is false.
    """
    if timestamp.tzinfo is None:
        if naive_is_utc:
            return timestamp.replace(tzinfo=UTC)
        return timestamp.astimezone(UTC)
    if timestamp.tzinfo is UTC:
        return timestamp
    return timestamp.astimezone(UTC)


def format_timestamp(timestamp: datetime) -> str:
    """ISO 8601 in UTC with microseconds, as the CSV files and logs write it."""
    return to_utc(timestamp).isoformat(timespec="microseconds")


def parse_timestamp(text: str) -> datetime:
    """Inverse of :func:`format_timestamp`; naive text is taken as UTC. Raises ValueError."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return to_utc(parsed)


def validation_error(tag_name: object, value: object, quality: object) -> str | None:
    """Why a reading cannot be stored, or None when it can. Timestamps are checked per poll."""
    if not isinstance(tag_name, str):
        return f"tag name must be a string, got {type(tag_name).__name__}"
    if not tag_name.strip():
        return "tag name is empty"
    if len(tag_name) > MAX_TAG_NAME_LENGTH:
        return f"tag name is {len(tag_name)} characters, the limit is {MAX_TAG_NAME_LENGTH}"
    if quality not in _QUALITIES:
        return f"quality must be GOOD or BAD, got {quality!r}"
    if value is None or type(value) in _SCALAR_TYPES:
        if isinstance(value, str) and len(value) > MAX_TEXT_BYTES // 4:
            size = utf8_length(value)
            if size > MAX_TEXT_BYTES:
                return f"text value is {size} bytes in UTF-8, the limit is {MAX_TEXT_BYTES} bytes"
        return None
    return f"unsupported value type {type(value).__name__}"


def utf8_length(text: str) -> int:
    """The length of ``text`` in UTF-8 bytes (a lone surrogate counts its three bytes)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def timestamp_error(timestamp: object) -> str | None:
    """Why a collection timestamp is unusable, or None."""
    if not isinstance(timestamp, datetime):
        return f"timestamp must be a datetime, got {type(timestamp).__name__}"
    return None


_QUALITIES = frozenset({Quality.GOOD.value, Quality.BAD.value})
_SCALAR_TYPES = frozenset({int, float, str, bool})


def readings(poll: PollingData) -> Iterator[tuple[str, object, str]]:
    """The (tag_name, value, quality) readings of one poll: values GOOD, read errors BAD."""
    good = Quality.GOOD.value
    for name, value in poll.values.items():
        yield name, value, good
    bad = Quality.BAD.value
    for name in poll.errors:
        yield name, None, bad


def split_value(value: TagScalar, *, max_integer: int | None = None) -> tuple[int | float | None, str | None]:
    """Decide which column a value goes to: ``(number, None)``, ``(None, text)`` or ``(None, None)``.

    Numbers that a NUMBER column holds exactly go to the number column; strings, and numbers it
    cannot hold (NaN, infinities, more than 38 digits, magnitude of 1e126 or more, a non-zero
    magnitude below 1e-130), go to the text column in their exact decimal spelling. Booleans are
    stored as 1/0. ``max_integer`` lets a database with a narrower integer type (SQLite's 64-bit
    INTEGER) send larger integers to text.
    """
    if value is None:
        return None, None
    kind = type(value)
    if kind is float:
        number = float(value)
        magnitude = abs(number)
        if (
            math.isfinite(number)
            and magnitude < NUMBER_MAX_MAGNITUDE
            and (magnitude >= NUMBER_MIN_MAGNITUDE or number == 0)
        ):
            return number, None
        return None, repr(number)
    if kind is bool:
        return (1 if value else 0), None
    if kind is int:
        integer = int(value)
        limit = max_integer if max_integer is not None else _MAX_NUMBER_INTEGER
        if -limit <= integer <= limit:
            return integer, None
        return None, str(integer)
    if kind is str:
        return None, str(value)
    raise TypeError(f"unsupported value type {kind.__name__}")


_MAX_NUMBER_INTEGER = 10**NUMBER_MAX_DIGITS - 1
