"""The payload of one log record: the values of one poll batch.

A batch is written as a pickle (protocol 5) of four columns: names, values, timestamps as integer
microseconds since the epoch (UTC; one integer when the whole batch shares its timestamp, as a
poll's values do) and the indexes of values whose quality is not GOOD. The columns come from one
``zip`` and pickle encodes them in C, floats in binary: about a sixth of what the same columns
cost as JSON (each float spelled out by ``repr``), and the append is on the intake's hot path. It
round-trips every value the collector accepts exactly (int of any size, float including NaN and
the infinities, bool, str, None).

Reading never trusts a payload further than plain data: the unpickler refuses every global, so a
record can only ever build strings, numbers, lists and tuples (the restriction the ``pickle``
documentation describes), and the columns are checked before any value is made. ``collector wal``
reads the records for an operator (what they hold, their time range). Records written as JSON
(``[names, values, stamps, bad]``, the format before) are still read.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from collector.model import Quality, TagValue, to_utc

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_GOOD = Quality.GOOD.value
_BAD = Quality.BAD.value
_PROTOCOL = 5
_PICKLE_START = b"\x80\x05"
_SCALARS = frozenset({int, float, str, bool, type(None)})


class PayloadError(ValueError):
    """A record whose checksum matched but whose payload is not a batch this version can read."""


def to_micros(timestamp: datetime) -> int:
    return (to_utc(timestamp) - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def encode_values(values: Sequence[TagValue]) -> bytes:
    """``(names, values, timestamps_us, bad_indexes)`` as a pickle; see the module doc."""
    names, scalars, stamps, qualities = zip(*values, strict=True)
    distinct = set(stamps)
    if len(distinct) == 1:
        micros: int | list[int] = to_micros(stamps[0])
    else:
        known = {stamp: to_micros(stamp) for stamp in distinct}
        micros = [known[stamp] for stamp in stamps]
    bad = [index for index, quality in enumerate(qualities) if quality != _GOOD] if _BAD in qualities else []
    return pickle.dumps((names, scalars, micros, bad), _PROTOCOL)


class _PlainData(pickle.Unpickler):
    """Builds only what needs no global: str, bytes, numbers, None, lists, tuples, dicts, sets."""

    def find_class(self, module: str, name: str) -> object:
        raise PayloadError(f"payload names {module}.{name}; a record holds plain data only")


def decode_values(payload: bytes, count: int) -> list[TagValue]:
    """Inverse of :func:`encode_values`; raises :class:`PayloadError` for anything it cannot trust."""
    try:
        if payload.startswith(_PICKLE_START):
            columns = _PlainData(io.BytesIO(payload)).load()
        else:
            columns = json.loads(payload)
        names, scalars, stamps, bad = columns
        if isinstance(stamps, int) and not isinstance(stamps, bool):
            stamps = [stamps] * count
        if not len(names) == len(scalars) == len(stamps) == count:
            raise PayloadError(f"record says {count} values, payload holds {len(names)}")
        _check_columns(names, scalars, stamps, bad)
        times = {micros: from_micros(micros) for micros in set(stamps)}
        qualities = [_GOOD] * count
        for index in bad:
            qualities[index] = _BAD
        return [
            TagValue(name, scalar, times[micros], quality)
            for name, scalar, micros, quality in zip(names, scalars, stamps, qualities, strict=True)
        ]
    except PayloadError:
        raise
    except (
        ValueError,
        TypeError,
        IndexError,
        OverflowError,
        KeyError,
        EOFError,
        pickle.UnpicklingError,
    ) as exc:
        raise PayloadError(f"unreadable payload: {exc}") from exc


def _check_columns(names: object, scalars: object, stamps: object, bad: object) -> None:
    """Every column holds what :func:`encode_values` puts in it, or the payload is refused."""
    for column in (names, scalars, stamps, bad):
        if not isinstance(column, list | tuple):
            raise PayloadError(f"a column is a {type(column).__name__}, not a list")
    assert isinstance(names, list | tuple) and isinstance(scalars, list | tuple)
    assert isinstance(stamps, list | tuple) and isinstance(bad, list | tuple)
    if not all(type(name) is str for name in names):
        raise PayloadError("a tag name is not text")
    if not all(type(scalar) in _SCALARS for scalar in scalars):
        raise PayloadError("a value is not a number, a boolean, a text or none")
    if not all(type(stamp) is int for stamp in stamps) or not all(type(index) is int for index in bad):
        raise PayloadError("a timestamp or an index is not an integer")
