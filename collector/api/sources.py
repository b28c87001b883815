"""The status document's ``source`` section: where values come from, and the network sources'
state and counters (MQTT, ``POST /api/v1/values``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from collector.sources.counters import SourceState, SourceStats

_INT = {"type": "integer", "minimum": 0}


def source_section(kind: str, sources: Iterable[SourceStats]) -> dict[str, Any]:
    return {"type": kind, "inputs": [_input(stats) for stats in sources]}


def _input(s: SourceStats) -> dict[str, Any]:
    return {
        "kind": s.kind,
        "endpoint": s.endpoint,
        "subscriptions": list(s.subscriptions),
        "state": s.state.value,
        "messages": s.messages,
        "polls": s.polls,
        "values": s.values,
        "refused": s.refused,
        "malformed": s.malformed,
        "redeliveries": s.redeliveries,
        "connects": s.connects,
        "disconnects": s.disconnects,
        "last_message_at": (
            None
            if s.last_message_at is None
            else datetime.fromtimestamp(s.last_message_at, UTC).isoformat(timespec="milliseconds")
        ),
        "last_error": s.last_error,
    }


def _object(properties: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(properties),
        "additionalProperties": False,
        "properties": properties,
        "description": description,
    }


SOURCE_INPUT_SCHEMA = _object(
    {
        "kind": {"type": "string", "enum": ["mqtt", "http"]},
        "endpoint": {"type": "string", "description": "The broker URL, or the ingest path."},
        "subscriptions": {"type": "array", "items": {"type": "string"}},
        "state": {"type": "string", "enum": [state.value for state in SourceState]},
        "messages": _INT,
        "polls": _INT,
        "values": {**_INT, "description": "Values accepted."},
        "refused": {**_INT, "description": "Readings refused (rejected CSV for MQTT, 400 for HTTP)."},
        "malformed": {**_INT, "description": "Messages with at least one problem."},
        "redeliveries": {**_INT, "description": "Messages the broker delivered again."},
        "connects": _INT,
        "disconnects": _INT,
        "last_message_at": {"type": "string", "format": "date-time", "nullable": True},
        "last_error": {"type": "string", "nullable": True},
    },
    "One network source.",
)

SOURCE_SCHEMA = _object(
    {
        "type": {"type": "string", "description": "source.type: simulator, external or mqtt."},
        "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/SourceInput"}},
    },
    "Where values come from; the network sources (MQTT, POST /api/v1/values) with their counters.",
)
