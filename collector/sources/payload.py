"""The JSON payload contract for values that arrive over the network (MQTT, ``POST /api/v1/values``).

One poll is what a polling engine reads from one group at one moment::

    {"group": "line1", "timestamp": "2026-11-30T10:00:00.250Z",
     "values": [{"tag": "L1.Temp", "value": 71.5},
                {"tag": "L1.State", "value": "RUNNING"},
                {"tag": "L1.Valve", "value": 3, "quality": "BAD"}],
     "errors": [{"tag": "L1.Flow", "error": "read timeout"}]}

A batch is ``{"polls": [poll, ...]}``. A reading's value is a number, a string, a boolean or null;
its quality is GOOD unless it says BAD; a read error is stored as quality BAD with no value
(FR-017). The timestamp is RFC 3339 with an offset: a naive time is ambiguous once it has crossed a
network, so it is refused here. Readings are arrays rather than objects keyed by tag name so that
every rule (tag names of 1 to 100 characters, say) is one a JSON Schema and an OpenAPI 3.0
document can state, and generated clients and fuzzers follow it. A tag listed twice in one poll is
not an error: both readings carry the same key, so the second is stored as a counted duplicate.

:func:`parse_payload` turns the raw bytes into validated :class:`~collector.model.TagValue` s and a
list of :class:`Problem` s, each with a JSON pointer to the item and a reason a person can act on.
A problem with a poll (bad timestamp) refuses that poll's readings; a problem with a reading
refuses that reading only. The JSON Schema in ``schemas/tag-values.schema.json`` says the same in a
machine's words (:func:`json_schema` builds it; a test keeps the file equal to it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collector.model import (
    MAX_TAG_NAME_LENGTH,
    MAX_TEXT_BYTES,
    InvalidValue,
    PollingData,
    Quality,
    TagValue,
    to_utc,
    validation_error,
)

SCHEMA_FILE = "tag-values.schema.json"
MAX_GROUP_LENGTH = 100
EXCERPT_CHARS = 200
"""How much of an unreadable payload is kept with its rejection, so an operator can see what came."""

NOT_ONLY_SPACE = r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""A character that is not white space in Python's sense (``str.isspace``), spelled out: a regex's
``\\S`` means fewer characters in JSON Schema's (ECMA) dialect than ``str.strip`` removes, and a name
must be refused or accepted the same way by the schema and by the service."""
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_EDGE_DAYS = ("0001-01-01", "9999-12-31")
"""The first and last day a datetime holds: with an offset, the time in UTC may fall outside them, so
a timestamp on either day is refused (the schema says so with a pattern)."""
_POLL_KEYS = frozenset({"group", "timestamp", "values", "errors"})
_READING_KEYS = frozenset({"tag", "value", "quality"})
_ERROR_KEYS = frozenset({"tag", "error"})
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
    values = poll.get("values", [])
    errors = poll.get("errors", [])
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
    for section, items in (("values", values), ("errors", errors)):
        for index, item in enumerate(items):
            problem = _reading(item, stamp, f"{where}/{section}/{index}", parsed, error=section == "errors")
            if problem is None:
                accepted += 1
            else:
                parsed.problems.append(problem)
    parsed.polls += 1
    if accepted:
        parsed.timestamps.append(stamp)


def _poll_fault(poll: dict[str, Any], where: str, values: object, errors: object) -> Problem | None:
    """What makes a poll unreadable as a whole (its timestamp aside), with the key at fault."""
    extra = sorted(set(poll) - _POLL_KEYS)
    group = poll.get("group")
    length = len(group) if isinstance(group, str) else 0
    faults = [
        (_pointer(*extra[:1]), "unknown key in a poll (group, timestamp, values, errors)", bool(extra)),
        ("/group", f"group must be a non-empty string, got {_kind(group)}", not _named(group)),
        (
            "/group",
            f"group is {length} characters, the limit is {MAX_GROUP_LENGTH}",
            length > MAX_GROUP_LENGTH,
        ),
        (
            "/timestamp",
            "missing (RFC 3339 with an offset, e.g. 2026-11-30T10:00:00Z)",
            "timestamp" not in poll,
        ),
        ("/values", f"must be an array of readings, got {_kind(values)}", not isinstance(values, list)),
        ("/errors", f"must be an array of read errors, got {_kind(errors)}", not isinstance(errors, list)),
    ]
    return next((Problem(where + key, reason) for key, reason, faulty in faults if faulty), None)


def _named(text: object) -> bool:
    return isinstance(text, str) and bool(text.strip())


def _readable(values: object, errors: object, stamp: object, reason: str) -> tuple[InvalidValue, ...]:
    """Whatever tag readings a refused poll held, so that each appears in the rejected CSV."""
    out: list[InvalidValue] = []
    for items, bad in ((values, False), (errors, True)):
        if not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, dict):
                quality = Quality.BAD.value if bad else item.get("quality", Quality.GOOD.value)
                out.append(
                    InvalidValue(item.get("tag"), None if bad else item.get("value"), stamp, quality, reason)
                )
            else:
                out.append(InvalidValue(None, item, stamp, "", reason))
    return tuple(out)


def _reading(item: object, stamp: datetime, pointer: str, parsed: Parsed, *, error: bool) -> Problem | None:
    """One element of ``values`` (``{tag, value, quality?}``) or of ``errors`` (``{tag, error}``)."""
    if not isinstance(item, dict):
        kind = "read error" if error else "reading"
        reason = f"a {kind} must be an object, got {_kind(item)}"
        return Problem(pointer, reason, (InvalidValue(None, item, stamp, "", reason),))
    name = item.get("tag")
    quality = Quality.BAD.value if error else item.get("quality", Quality.GOOD.value)
    value = None if error else item.get("value")
    problem = _reading_fault(item, error) or validation_error(name, value, quality)
    if problem is not None:
        reason = problem
        where = f"{pointer} (tag {name!r})" if isinstance(name, str) else pointer
        return Problem(where, reason, (InvalidValue(name, value, stamp, quality, reason),))
    parsed.values.append(TagValue(name, value, stamp, quality))  # type: ignore[arg-type]
    return None


def _reading_fault(item: dict[str, Any], error: bool) -> str | None:
    """What is wrong with a reading's shape (the model checks the tag name and the value)."""
    keys = _ERROR_KEYS if error else _READING_KEYS
    extra = sorted(set(item) - keys)
    if extra:
        kind = "read error" if error else "reading"
        return f"unknown key {extra[0]!r} (a {kind} has {', '.join(sorted(keys))})"
    if "tag" not in item:
        return "missing tag"
    if error:
        detail = item.get("error")
        return (
            None
            if isinstance(detail, str)
            else f"error must be a string (the read error), got {_kind(detail)}"
        )
    value = item.get("value")
    if isinstance(value, list | dict):
        return f"value must be a number, string, boolean or null, got {_kind(value)}"
    quality = item.get("quality", Quality.GOOD.value)
    return None if quality in _QUALITIES else f"quality must be GOOD or BAD, got {quality!r}"


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
    if raw.startswith(_EDGE_DAYS):
        return None, f"timestamp {raw!r} is on {raw[:10]}: an offset can move it outside the years 1 to 9999"
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


def encode_poll(poll: PollingData) -> bytes:
    """One poll as the contract's JSON (what a publisher sends): values GOOD, read errors BAD."""
    document = {
        "group": poll.group_name,
        "timestamp": to_utc(poll.timestamp).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "values": [{"tag": tag, "value": _json_scalar(value)} for tag, value in poll.values.items()],
        "errors": [{"tag": tag, "error": error} for tag, error in poll.errors.items()],
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _json_scalar(value: object) -> object:
    # JSON has no NaN or infinity; their text is what the tables would store for them anyway.
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def excerpt(data: bytes, limit: int = EXCERPT_CHARS) -> str:
    """The start of a payload as text, for a rejection that could read nothing of it."""
    text = data[: limit * 4].decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- the JSON Schema


def json_schema() -> dict[str, Any]:
    """The payload contract as JSON Schema (draft 2020-12), shipped as ``schemas/`` + SCHEMA_FILE."""
    tag = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_TAG_NAME_LENGTH,
        "pattern": NOT_ONLY_SPACE,
        "description": "Tag name: 1 to 100 characters, not only spaces (FR-013).",
    }
    scalar = {
        "type": ["number", "string", "boolean", "null"],
        "maxLength": MAX_TEXT_BYTES,
        "description": "A number, a string of at most 4000 bytes in UTF-8 (maxLength bounds the"
        " characters; text of multi-byte characters holds fewer), a boolean (stored 1/0) or null.",
    }
    reading = {
        "type": "object",
        "required": ["tag"],
        "additionalProperties": False,
        "properties": {
            "tag": {"$ref": "#/$defs/tagName"},
            "value": {"$ref": "#/$defs/scalar"},
            "quality": {"enum": list(_QUALITIES), "description": "Default GOOD."},
        },
        "description": "One tag's reading.",
    }
    read_error = {
        "type": "object",
        "required": ["tag", "error"],
        "additionalProperties": False,
        "properties": {"tag": {"$ref": "#/$defs/tagName"}, "error": {"type": "string"}},
        "description": "A tag that could not be read: stored with quality BAD and no value.",
    }
    poll = {
        "type": "object",
        "required": ["group", "timestamp"],
        "additionalProperties": False,
        "properties": {
            "group": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_GROUP_LENGTH,
                "pattern": NOT_ONLY_SPACE,
            },
            "timestamp": {
                "type": "string",
                "format": "date-time",
                "pattern": "^(?!0001-01-01|9999-12-31)",
                "description": "Collection time, RFC 3339 with an offset (Z or +hh:mm), not on the first"
                " or last day of the years 1 to 9999.",
            },
            "values": {"type": "array", "items": {"$ref": "#/$defs/reading"}},
            "errors": {"type": "array", "items": {"$ref": "#/$defs/readError"}},
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
        "$defs": {
            "poll": poll,
            "batch": batch,
            "reading": reading,
            "readError": read_error,
            "scalar": scalar,
            "tagName": tag,
        },
    }


def openapi_schemas(prefix: str = "TagValues") -> dict[str, Any]:
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
