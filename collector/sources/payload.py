"""The JSON payload contract for values that arrive over the network (MQTT, ``POST /api/v1/values``).

One poll is what a polling engine reads from one group at one moment::

    {"group": "line1", "timestamp": "2026-11-30T10:00:00.250Z",
     "values": {"L1.Temp": 71.5, "L1.State": "RUNNING", "L1.Valve": {"value": 3, "quality": "BAD"}},
     "errors": {"L1.Flow": "read timeout"}}

A batch is ``{"polls": [poll, ...]}``. ``values`` maps tag names to a number, string, boolean or
null (quality GOOD), or to ``{"value": ..., "quality": "GOOD"|"BAD"}``; ``errors`` maps tag names to
the read error, stored as quality BAD with no value (FR-017). The timestamp is RFC 3339 with an
offset: a naive time is ambiguous once it has crossed a network, so it is refused here.

:func:`parse_payload` turns the raw bytes into validated :class:`~collector.model.TagValue` s and a
list of :class:`Problem` s, each with a JSON pointer to the item and a reason a person can act on.
A problem with a poll (bad timestamp) refuses that poll's readings; a problem with a tag refuses
that tag only. The JSON Schema in ``schemas/tag-values.schema.json`` says the same in a machine's
words (:func:`json_schema` builds it; a test keeps the file equal to it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collector.model import (
    MAX_TAG_NAME_LENGTH,
    MAX_TEXT_LENGTH,
    InvalidValue,
    Quality,
    TagValue,
    validation_error,
)

SCHEMA_FILE = "tag-values.schema.json"
MAX_GROUP_LENGTH = 100
EXCERPT_CHARS = 200
"""How much of an unreadable payload is kept with its rejection, so an operator can see what came."""

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_POLL_KEYS = frozenset({"group", "timestamp", "values", "errors"})
_READING_KEYS = frozenset({"value", "quality"})
_QUALITIES = (Quality.GOOD.value, Quality.BAD.value)


@dataclass(frozen=True, slots=True)
class Problem:
    """Why part of a payload was refused: where (a JSON pointer), why, and the readings it refuses.

    ``readings`` holds what could be read of the refused tag values, for the rejected CSV; it is
    empty when nothing could be read (a payload that is not JSON, a poll that is not an object).
    """

    pointer: str
    reason: str
    readings: tuple[InvalidValue, ...] = ()

    def describe(self) -> str:
        return f"{self.pointer or '/'}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"pointer": self.pointer, "reason": self.reason, "values": len(self.readings)}


@dataclass(slots=True)
class Parsed:
    """What one payload held: the valid values (timestamps in UTC), the polls, and every problem."""

    values: list[TagValue] = field(default_factory=list)
    polls: int = 0
    timestamps: list[datetime] = field(default_factory=list)
    """The collection time of every poll that gave valid values (for the intake lag)."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def refused(self) -> int:
        """Readings refused (at least one per problem, so an unreadable message still counts)."""
        return sum(max(1, len(p.readings)) for p in self.problems)


def parse_payload(data: bytes | str) -> Parsed:
    """Parse and validate one payload (a poll or a batch of polls). Never raises on bad input."""
    parsed = Parsed()
    try:
        document = json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        parsed.problems.append(Problem("", f"not valid JSON: {_json_error(exc)}"))
        return parsed
    if not isinstance(document, dict):
        parsed.problems.append(
            Problem("", f"must be a JSON object (a poll or a batch), got {_kind(document)}")
        )
        return parsed
    if "polls" in document:
        _parse_batch(document, parsed)
    else:
        _parse_poll(document, "", parsed)
    return parsed


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_error(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(exc)


def _kind(value: object) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _pointer(*parts: object) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _parse_batch(document: dict[str, Any], parsed: Parsed) -> None:
    extra = sorted(set(document) - {"polls"})
    polls = document["polls"]
    if extra:
        parsed.problems.append(Problem(_pointer(extra[0]), "unknown key in a batch (only polls)"))
        return
    if not isinstance(polls, list) or not polls:
        parsed.problems.append(Problem("/polls", f"must be a non-empty array of polls, got {_kind(polls)}"))
        return
    for index, poll in enumerate(polls):
        where = _pointer("polls", index)
        if isinstance(poll, dict):
            _parse_poll(poll, where, parsed)
        else:
            parsed.problems.append(Problem(where, f"a poll must be an object, got {_kind(poll)}"))


def _parse_poll(poll: dict[str, Any], where: str, parsed: Parsed) -> None:
    values = poll.get("values", {})
    errors = poll.get("errors", {})
    raw_stamp = poll.get("timestamp")
    # Poll-level faults refuse every reading of the poll, each kept for the rejected CSV.
    fault = _poll_fault(poll, where, values, errors)
    stamp: datetime | None = None
    if fault is None:
        stamp, reason = parse_rfc3339(raw_stamp)
        if reason is not None:
            fault = Problem(where + "/timestamp", reason)
    if fault is not None:
        readings = _readable(values, errors, raw_stamp, fault.describe())
        parsed.problems.append(Problem(fault.pointer, fault.reason, readings))
        return
    assert stamp is not None
    accepted = 0
    for name, raw in values.items():
        problem = _reading(
            name, raw, stamp, _pointer_in(where, "values", name), parsed, also_error=name in errors
        )
        if problem is None:
            accepted += 1
        else:
            parsed.problems.append(problem)
    for name, error in errors.items():
        pointer = _pointer_in(where, "errors", name)
        reason = validation_error(name, None, Quality.BAD.value)
        if reason is None and not isinstance(error, str):
            reason = f"a read error must be a string, got {_kind(error)}"
        if reason is None and name in values:
            reason = "the tag is in both values and errors"
        if reason is None:
            parsed.values.append(TagValue(name, None, stamp, Quality.BAD.value))
            accepted += 1
        else:
            parsed.problems.append(
                Problem(pointer, reason, (InvalidValue(name, None, stamp, Quality.BAD.value, reason),))
            )
    parsed.polls += 1
    if accepted:
        parsed.timestamps.append(stamp)


def _pointer_in(where: str, section: str, name: str) -> str:
    return where + _pointer(section, name)


def _poll_fault(poll: dict[str, Any], where: str, values: object, errors: object) -> Problem | None:
    extra = sorted(set(poll) - _POLL_KEYS)
    if extra:
        return Problem(where + _pointer(extra[0]), "unknown key in a poll (group, timestamp, values, errors)")
    group = poll.get("group")
    if not isinstance(group, str) or not group.strip():
        return Problem(where + "/group", f"group must be a non-empty string, got {_kind(group)}")
    if len(group) > MAX_GROUP_LENGTH:
        return Problem(where + "/group", f"group is {len(group)} characters, the limit is {MAX_GROUP_LENGTH}")
    if "timestamp" not in poll:
        return Problem(where + "/timestamp", "missing (RFC 3339 with an offset, e.g. 2026-11-30T10:00:00Z)")
    if not isinstance(values, dict):
        return Problem(where + "/values", f"must be an object of tag name to value, got {_kind(values)}")
    if not isinstance(errors, dict):
        return Problem(where + "/errors", f"must be an object of tag name to read error, got {_kind(errors)}")
    return None


def _readable(values: object, errors: object, stamp: object, reason: str) -> tuple[InvalidValue, ...]:
    """Whatever tag readings a refused poll held, so that each appears in the rejected CSV."""
    out: list[InvalidValue] = []
    if isinstance(values, dict):
        for name, raw in values.items():
            value, quality = _split_reading(raw)
            out.append(InvalidValue(name, value, stamp, quality, reason))
    if isinstance(errors, dict):
        out.extend(InvalidValue(name, None, stamp, Quality.BAD.value, reason) for name in errors)
    return tuple(out)


def _split_reading(raw: object) -> tuple[object, object]:
    if isinstance(raw, dict) and "quality" in raw and set(raw) <= _READING_KEYS:
        return raw.get("value"), raw["quality"]
    return raw, Quality.GOOD.value


def _reading(
    name: str, raw: object, stamp: datetime, pointer: str, parsed: Parsed, *, also_error: bool
) -> Problem | None:
    value, quality = raw, Quality.GOOD.value
    reason: str | None = None
    if isinstance(raw, dict):
        extra = sorted(set(raw) - _READING_KEYS)
        if extra:
            reason = f"unknown key {extra[0]!r} in a reading (only value, quality)"
        elif "quality" not in raw:
            reason = "a reading object needs a quality (GOOD or BAD)"
        else:
            value, quality = raw.get("value"), raw["quality"]
            if quality not in _QUALITIES:
                reason = f"quality must be GOOD or BAD, got {quality!r}"
    if reason is None:
        if isinstance(value, list | dict):
            reason = f"a value must be a number, string, boolean or null, got {_kind(value)}"
        else:
            reason = validation_error(name, value, quality)
    if reason is None and also_error:
        reason = "the tag is in both values and errors"
    if reason is not None:
        return Problem(pointer, reason, (InvalidValue(name, value, stamp, quality, reason),))
    parsed.values.append(TagValue(name, value, stamp, quality))  # type: ignore[arg-type]
    return None


def parse_rfc3339(raw: object) -> tuple[datetime | None, str | None]:
    """An RFC 3339 timestamp with an offset, as an aware UTC datetime; or the reason it is not one.

    Fractions of a second beyond microseconds are cut (the tables keep microseconds).
    """
    if not isinstance(raw, str):
        return None, f"timestamp must be an RFC 3339 string, got {_kind(raw)}"
    if not _RFC3339.match(raw):
        return None, (
            f"timestamp {raw[:60]!r} is not RFC 3339 with an offset"
            " (e.g. 2026-11-30T10:00:00.250Z or 2026-11-30T11:00:00+01:00)"
        )
    try:
        parsed = datetime.fromisoformat(raw.upper())
    except ValueError as exc:
        return None, f"timestamp {raw!r} is not a real time: {exc}"
    return parsed.astimezone(UTC), None


def as_invalid(problem: Problem, *, where: str, excerpt: str) -> list[InvalidValue]:
    """The rejected-CSV rows for one problem: its readings, or one row carrying ``excerpt`` (the
    start of the payload) when nothing in it could be read. ``where`` says where it came from
    (``mqtt topic plant/line1``) and leads every reason."""
    reason = f"{where}: {problem.describe()}"
    if problem.readings:
        return [item._replace(reason=reason) for item in problem.readings]
    return [InvalidValue("", excerpt, None, "", reason)]


def excerpt(data: bytes, limit: int = EXCERPT_CHARS) -> str:
    """The start of a payload as text, for a rejection that could read nothing of it."""
    text = data[: limit * 4].decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- the JSON Schema


def _tag_name() -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_TAG_NAME_LENGTH,
        "pattern": r"\S",
        "description": "Tag name: up to 100 characters, not only spaces (FR-013).",
    }


def json_schema() -> dict[str, Any]:
    """The payload contract as JSON Schema (draft 2020-12), shipped as ``schemas/`` + SCHEMA_FILE."""
    scalar = {
        "type": ["number", "string", "boolean", "null"],
        "maxLength": MAX_TEXT_LENGTH,
        "description": "A number, a string of at most 4000 characters, a boolean (stored 1/0) or null.",
    }
    reading = {
        "type": "object",
        "required": ["quality"],
        "additionalProperties": False,
        "properties": {"value": {"$ref": "#/$defs/scalar"}, "quality": {"enum": list(_QUALITIES)}},
        "description": "A reading with an explicit quality.",
    }
    poll = {
        "type": "object",
        "required": ["group", "timestamp"],
        "additionalProperties": False,
        "properties": {
            "group": {"type": "string", "minLength": 1, "maxLength": MAX_GROUP_LENGTH, "pattern": r"\S"},
            "timestamp": {
                "type": "string",
                "format": "date-time",
                "description": "Collection time, RFC 3339 with an offset (Z or +hh:mm).",
            },
            "values": {
                "type": "object",
                "propertyNames": {"$ref": "#/$defs/tagName"},
                "additionalProperties": {"anyOf": [{"$ref": "#/$defs/scalar"}, {"$ref": "#/$defs/reading"}]},
                "description": "Tag name to value (quality GOOD) or to a reading object.",
            },
            "errors": {
                "type": "object",
                "propertyNames": {"$ref": "#/$defs/tagName"},
                "additionalProperties": {"type": "string"},
                "description": "Tag name to read error: stored with quality BAD and no value."
                " A tag must not be in both values and errors.",
            },
        },
        "description": "One poll of one group.",
    }
    batch = {
        "type": "object",
        "required": ["polls"],
        "additionalProperties": False,
        "properties": {"polls": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/poll"}}},
        "description": "Several polls in one message.",
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_FILE,
        "title": "PLC tag values",
        "description": "One poll, or a batch of polls, sent to the collector over MQTT or"
        " POST /api/v1/values. See docs/intake.md.",
        "oneOf": [{"$ref": "#/$defs/poll"}, {"$ref": "#/$defs/batch"}],
        "$defs": {"poll": poll, "batch": batch, "reading": reading, "scalar": scalar, "tagName": _tag_name()},
    }


def openapi_schemas(prefix: str = "Values") -> dict[str, Any]:
    """The same contract in OpenAPI 3.0's dialect (``nullable`` for null, refs to components)."""
    source = json_schema()
    names = {name: f"{prefix}{name[0].upper()}{name[1:]}" for name in source["$defs"]}

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref":
                out[key] = "#/components/schemas/" + names[value.rsplit("/", 1)[1]]
            elif key == "type" and isinstance(value, list):
                # OpenAPI 3.0 has no type lists: a scalar of several types is an anyOf of each.
                kinds = [kind for kind in value if kind != "null"]
                out["anyOf"] = [_openapi_scalar(kind, node) for kind in kinds]
                if "null" in value:
                    out["nullable"] = True
            elif key == "maxLength" and isinstance(node.get("type"), list):
                continue  # carried into the string branch above
            else:
                out[key] = convert(value)
        return out

    schemas = {names[name]: convert(schema) for name, schema in source["$defs"].items()}
    schemas[prefix] = {
        "oneOf": [
            {"$ref": f"#/components/schemas/{names['poll']}"},
            {"$ref": f"#/components/schemas/{names['batch']}"},
        ],
        "description": source["description"],
    }
    return schemas


def _openapi_scalar(kind: str, node: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "string" and "maxLength" in node:
        return {"type": "string", "maxLength": node["maxLength"]}
    return {"type": kind}
