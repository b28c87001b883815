"""Structured, one-line log records (FR-023).

Every significant event is logged with an ``event`` name and its figures as fields, so an operator
can grep ``event=buffer_overflow`` or feed the JSON form to a log pipeline:

    2026-11-28T21:40:00.123Z WARNING collector.buffer event=buffer_overflow dropped=120 total=480 ...
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

DRIVER_LOGGERS = ("psycopg",)

_FIELDS_ATTR = "collector_fields"
_EVENT_ATTR = "collector_event"


def log_event(logger: logging.Logger, level: int, event: str, message: str = "", **fields: Any) -> None:
    """Log ``event`` with its fields; the formatter renders them as ``key=value`` or JSON."""
    if logger.isEnabledFor(level):
        logger.log(
            level, message or event.replace("_", " "), extra={_EVENT_ATTR: event, _FIELDS_ATTR: fields}
        )


def _format_value(value: Any) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    if not text or any(ch in text for ch in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


class KeyValueFormatter(logging.Formatter):
    """``time LEVEL logger event=... msg="..." key=value ...`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name]
        event = getattr(record, _EVENT_ATTR, None)
        if event:
            parts.append(f"event={event}")
        parts.append(f"msg={_format_value(record.getMessage())}")
        fields: Mapping[str, Any] = getattr(record, _FIELDS_ATTR, {}) or {}
        parts.extend(f"{key}={_format_value(value)}" for key, value in fields.items())
        if record.exc_info:
            parts.append(f"exc={_format_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, _EVENT_ATTR, None)
        if event:
            data["event"] = event
        data.update(getattr(record, _FIELDS_ATTR, {}) or {})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send the ``collector`` loggers to ``stream`` (stderr) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger("collector")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Database drivers' own warnings (psycopg's pool reporting a failed reconnect) in the same
    # format, rather than as bare lines from Python's last-resort handler. Their INFO is chatty
    # (every connection lent and returned), so they start at WARNING.
    for name in DRIVER_LOGGERS:
        driver = logging.getLogger(name)
        driver.handlers[:] = [handler]
        driver.setLevel(max(logging.WARNING, logging.getLevelName(level)))
        driver.propagate = False


class RateLimiter:
    """Allows one action per ``interval_s``; used to keep repeated warnings from flooding logs."""

    def __init__(self, interval_s: float, clock: Any = time.monotonic) -> None:
        self._interval = interval_s
        self._clock = clock
        self._next = float("-inf")

    def ready(self) -> bool:
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self._interval
        return True
