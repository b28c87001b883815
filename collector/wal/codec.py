"""The payload of one log record: the values of one poll batch, encoded as compact JSON.

JSON because it round-trips every value the collector accepts exactly (int of any size, float
including NaN and the infinities, bool, str, None), the standard library encodes it in C, and an
operator can read a record by eye. Timestamps travel as integer microseconds since the epoch (UTC);
a poll batch shares one timestamp in the common case, so each distinct timestamp is converted once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from collector.model import Quality, TagValue, to_utc

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_GOOD = Quality.GOOD.value
_BAD = Quality.BAD.value
_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=True, ensure_ascii=False)


class PayloadError(ValueError):
    """A record whose checksum matched but whose payload is not a batch this version can read."""


def to_micros(timestamp: datetime) -> int:
    return (to_utc(timestamp) - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def encode_values(values: Sequence[TagValue]) -> bytes:
    """``[names, values, timestamps_us, bad_indexes]``; qualities other than GOOD are listed by index."""
    names, scalars, stamps, qualities = zip(*values, strict=True)
    micros = {stamp: to_micros(stamp) for stamp in set(stamps)}
    bad = [index for index, quality in enumerate(qualities) if quality != _GOOD] if _BAD in qualities else []
    return _encoder.encode([names, scalars, [micros[stamp] for stamp in stamps], bad]).encode("utf-8")


def decode_values(payload: bytes, count: int) -> list[TagValue]:
    """Inverse of :func:`encode_values`; raises :class:`PayloadError` for anything it cannot trust."""
    try:
        names, scalars, stamps, bad = json.loads(payload)
        if not len(names) == len(scalars) == len(stamps) == count:
            raise PayloadError(f"record says {count} values, payload holds {len(names)}")
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
    except (ValueError, TypeError, IndexError, OverflowError) as exc:
        raise PayloadError(f"unreadable payload: {exc}") from exc
