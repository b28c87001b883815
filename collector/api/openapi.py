"""The OpenAPI document of the HTTP API (``GET /api/v1/openapi.json``).

The status schema is strict (no undocumented keys), so a change to the document that is not made
here fails the schemathesis run against the live service.
"""

from __future__ import annotations

from typing import Any

from collector import __version__
from collector.api.ingest import openapi_components, openapi_paths
from collector.api.sources import SOURCE_INPUT_SCHEMA, SOURCE_SCHEMA

_INT = {"type": "integer", "minimum": 0}
_NUM = {"type": "number", "minimum": 0}
_RATIO = {"type": "number", "minimum": 0, "maximum": 1}
_TIME = {"type": "string", "format": "date-time", "nullable": True}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": sorted(properties),
        "additionalProperties": False,
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


_SERVICE = _object(
    {
        "version": {"type": "string"},
        "state": {"type": "string", "enum": ["starting", "running", "stopping"]},
        "started_at": _TIME,
        "uptime_s": _nullable(_NUM),
        "sink": {"type": "string"},
        "database": {
            "type": "string",
            "description": "Where the sink writes, without credentials: the SQLite file's absolute path,"
            " or host:port/database (service name for Oracle).",
        },
        "table": {"type": "string"},
        "source": {"type": "string"},
        "backup_dir": {"type": "string", "description": "The backup directory, as an absolute path."},
        "fallback_dir": _nullable({"type": "string", "description": "The fallback backup directory."}),
    }
)

_BUFFER = _object(
    {
        "size": _INT,
        "capacity": {"type": "integer", "minimum": 1},
        "utilization": _RATIO,
        "high_water_mark": _INT,
        "inserted": _INT,
        "removed": _INT,
        "overflow": _INT,
        "overflow_ratio": _RATIO,
        "overflow_recent": {**_INT, "description": "Values discarded in the last 5 minutes."},
        "spilled": _INT,
        "spill_ratio": {
            **_RATIO,
            "description": "Utilization at which the oldest values spill to backup (1: spilling off).",
        },
        "status": {"type": "string", "enum": ["ok", "warning", "critical"]},
    },
    "The ring buffer (FR-005, FR-022, US3-4).",
)

_ROLLING = _object(
    {
        "window_s": _NUM,
        "successful_writes": _INT,
        "failed_writes": _INT,
        "success_rate": _nullable(_RATIO),
        "average_batch_size": _nullable(_NUM),
        "average_write_latency_s": _nullable(_NUM),
    },
    "Write attempts over the last 5 minutes (US4-3); averages are null when there were none.",
)

_WRITER = _object(
    {
        "successful_writes": {**_INT, "description": "Batches committed since start."},
        "failed_writes": {**_INT, "description": "Write attempts that failed since start."},
        "success_rate": _nullable(_RATIO),
        "batches_backed_up": _INT,
        "retries": _INT,
        "retry_pending": _INT,
        "in_flight": _INT,
        "sink_up": {"type": "boolean"},
        "last_success_at": _TIME,
        "last_error": {"type": "string", "nullable": True},
        "last_error_at": {**_TIME, "description": "When last_error happened (kept after recovery)."},
        "failing_since": {
            **_TIME,
            "description": "First failed attempt since the last commit; null while writes succeed.",
        },
        "rolling": _ROLLING,
    },
    "The batch writer (FR-022, US4-2).",
)

_VALUES = _object(
    {
        "accepted": _INT,
        "written": _INT,
        "duplicate": _INT,
        "rejected": _INT,
        "backed_up": _INT,
        "overflow_dropped": _INT,
        "lost": _INT,
        "in_buffer": _INT,
        "in_flight": _INT,
        "recovered": {
            **_INT,
            "description": "Values the write-ahead log gave back at start (accepted by the run before).",
        },
        "balanced": {"type": "boolean"},
    },
    "The accounting identity: accepted plus recovered equals the sum of the other counts.",
)

_WAL = {
    **_object(
        {
            "enabled": {"type": "boolean"},
            "durability": {"type": "string", "enum": ["off", "interval", "always"]},
            "directory": {"type": "string"},
            "writable": {"type": "boolean"},
            "full": {"type": "boolean"},
            "bytes": _INT,
            "segments": _INT,
            "unfinished_values": _INT,
            "mark": _INT,
            "logged_values": _INT,
            "unlogged_values": _INT,
            "recovered_values": _INT,
            "quarantined_ranges": _INT,
            "quarantined_values": _INT,
            "torn_bytes": _INT,
            "quarantine_files": _INT,
            "write_failures": _INT,
            "fsyncs": _INT,
            "fsync_avg_ms": _nullable(_NUM),
        },
        "The write-ahead log (docs/reliability.md); only enabled and durability when it is off.",
    ),
    "required": ["durability", "enabled"],
}

_BACKUPS = _object(
    {
        "files": _INT,
        "bytes": _INT,
        "rejected_files": _INT,
        "rejected_bytes": _INT,
        "rows": {
            **_INT,
            "description": "Rows in the waiting backup files (as `collector backups` counts them).",
        },
        "rejected_rows": {**_INT, "description": "Rows in the waiting rejected files."},
        "rows_from": {**_TIME, "description": "Collection time of the earliest row in the backup files."},
        "rows_to": {**_TIME, "description": "Collection time of the latest row in the backup files."},
        "rows_written": _INT,
        "failures": _INT,
        "fallback_active": {"type": "boolean"},
        "oldest_file": _TIME,
        "rejected_rows_written": _INT,
        "rejected_failures": _INT,
        "newest_rejected_file": _TIME,
        "disks": {
            "type": "array",
            "description": "The file systems of the backup (primary) and fallback directories.",
            "items": _object(
                {
                    "directory": {"type": "string", "enum": ["primary", "fallback"]},
                    "path": {"type": "string"},
                    "avail_bytes": _INT,
                    "size_bytes": _INT,
                }
            ),
        },
    },
    "Backup and rejected CSV files waiting in the backup directories (US4-4).",
)

_CIRCUIT = _object(
    {
        "state": {"type": "string", "enum": ["closed", "open"]},
        "reason": {
            "type": "string",
            "nullable": True,
            "description": "Why the circuit is open, or why it may open (writes failing, retries running).",
        },
        "permanent": {"type": "boolean"},
        "opened_at": _TIME,
        "trips": _INT,
        "probes": _INT,
    }
)

_ALERT = _object(
    {
        "name": {"type": "string"},
        "severity": {"type": "string", "enum": ["critical", "warning", "info"]},
        "summary": {"type": "string"},
        "runbook": {"type": "string"},
    }
)

_STATUS = _object(
    {
        "service": {"$ref": "#/components/schemas/Service"},
        "buffer": {"$ref": "#/components/schemas/Buffer"},
        "writer": {"$ref": "#/components/schemas/Writer"},
        "values": {"$ref": "#/components/schemas/Values"},
        "backups": {"$ref": "#/components/schemas/Backups"},
        "wal": {"$ref": "#/components/schemas/Wal"},
        "circuit": {"$ref": "#/components/schemas/Circuit"},
        "source": {"$ref": "#/components/schemas/Source"},
        "alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
        "taken_at": {"type": "string", "format": "date-time"},
    }
)

_PROBE = _object(
    {
        "status": {"type": "string", "enum": ["ok", "failing"]},
        "problems": {"type": "array", "items": {"type": "string"}},
    }
)

_ERROR = _object({"error": {"type": "string"}, "detail": {"type": "string"}})


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _probe(operation_id: str, summary: str, failing: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": operation_id,
            "responses": {"200": _json("Probe", "ok"), "503": _json("Probe", failing)},
        }
    }


def openapi_document() -> dict[str, Any]:
    document = _read_only_document()
    # POST /api/v1/values lives in its own module (collector.api.ingest).
    document["paths"].update(openapi_paths())
    ingest = openapi_components()
    document["components"]["schemas"].update(ingest["schemas"])
    document["components"]["securitySchemes"] = ingest["securitySchemes"]
    document["components"]["schemas"].update({"Source": SOURCE_SCHEMA, "SourceInput": SOURCE_INPUT_SCHEMA})
    return document


def _read_only_document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "PLC tag collector",
            "version": __version__,
            "description": "Buffer and writer status, health probes and Prometheus metrics."
            " Read-only except POST /api/v1/values (bearer token); bind it to a trusted network.",
        },
        "paths": {
            "/": {
                "get": {
                    "summary": "The admin page: the status at a glance, refreshed from /api/v1/status",
                    "operationId": "getAdminPage",
                    "responses": {
                        "200": {
                            "description": "The page.",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/runbook": {
                "get": {
                    "summary": "The runbook: a section per alert, anchored by its name in lower case",
                    "operationId": "getRunbook",
                    "responses": {
                        "200": {
                            "description": "The runbook.",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/api/v1/status": {
                "get": {
                    "summary": "Buffer, writer, backups, circuit and active alerts",
                    "operationId": "getStatus",
                    "responses": {"200": _json("Status", "The current status.")},
                }
            },
            "/healthz": _probe(
                "getHealth", "Liveness: the pipeline's threads are running", "a thread has died"
            ),
            "/readyz": _probe(
                "getReadiness",
                "Readiness: running and the database accepts writes",
                "not ready (database down, stopping)",
            ),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition or OpenMetrics by Accept header)",
                    "operationId": "getMetrics",
                    "responses": {
                        "200": {
                            "description": "The metrics.",
                            "content": {
                                "text/plain": {"schema": {"type": "string"}},
                                "application/openmetrics-text": {"schema": {"type": "string"}},
                            },
                        }
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "getOpenApi",
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Status": _STATUS,
                "Service": _SERVICE,
                "Buffer": _BUFFER,
                "Writer": _WRITER,
                "Values": _VALUES,
                "Backups": _BACKUPS,
                "Wal": _WAL,
                "Circuit": _CIRCUIT,
                "Alert": _ALERT,
                "Probe": _PROBE,
                "Error": _ERROR,
            }
        },
    }
