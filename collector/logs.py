"""Structured, one-line log records (FR-023).

Every significant event is logged with an ``event`` name and its figures as fields, so an operator
can grep ``event=buffer_overflow`` or feed the JSON form to a log pipeline:

    2026-11-28T21:40:00.123Z WARNING collector.buffer event=buffer_overflow dropped=120 total=480 ...

Every message, text field and traceback passes through a :class:`~collector.redaction.Redactor`
on its way out, so a driver error quoting a connect string never prints the password.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from collector.redaction import Redactor

DRIVER_LOGGERS = ("psycopg", "opentelemetry")

_FIELDS_ATTR = "collector_fields"
_EVENT_ATTR = "collector_event"


def log_event(logger: logging.Logger, level: int, event: str, message: str = "", **fields: Any) -> None:
    """Log ``event`` with its fields; the formatter renders them as ``key=value`` or JSON."""
    if logger.isEnabledFor(level):
        logger.log(
            level, message or event.replace("_", " "), extra={_EVENT_ATTR: event, _FIELDS_ATTR: fields}
        )


def log_failure(
    logger: logging.Logger, level: int, event: str, message: str, error: BaseException, **fields: Any
) -> None:
    """As :func:`log_event`, with ``error`` as a field and its traceback (masked like the rest)."""
    if logger.isEnabledFor(level):
        logger.log(
            level,
            message,
            exc_info=error,
            extra={_EVENT_ATTR: event, _FIELDS_ATTR: {"error": f"{type(error).__name__}: {error}", **fields}},
        )


def _format_value(value: Any) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    if not text or any(ch in text for ch in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


class _RedactingFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redact = redactor if redactor is not None else Redactor()

    def _message(self, record: logging.LogRecord) -> str:
        return self._redact(record.getMessage())

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        fields: Mapping[str, Any] = getattr(record, _FIELDS_ATTR, {}) or {}
        return {key: self._field(value) for key, value in fields.items()}

    def _field(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        return self._redact(str(value))

    def _exception(self, record: logging.LogRecord) -> str | None:
        return self._redact(self.formatException(record.exc_info)) if record.exc_info else None


class KeyValueFormatter(_RedactingFormatter):
    """``time LEVEL logger event=... msg="..." key=value ...`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name]
        event = getattr(record, _EVENT_ATTR, None)
        if event:
            parts.append(f"event={event}")
        parts.append(f"msg={_format_value(self._message(record))}")
        parts.extend(f"{key}={_format_value(value)}" for key, value in self._fields(record).items())
        exception = self._exception(record)
        if exception:
            parts.append(f"exc={_format_value(exception)}")
        return " ".join(parts)


class JsonFormatter(_RedactingFormatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": self._message(record),
        }
        event = getattr(record, _EVENT_ATTR, None)
        if event:
            data["event"] = event
        data.update(self._fields(record))
        exception = self._exception(record)
        if exception:
            data["exception"] = exception
        return json.dumps(data, default=str, ensure_ascii=False)


def configure_logging(
    level: str = "INFO",
    fmt: str = "text",
    stream: TextIO | None = None,
    *,
    redactor: Redactor | None = None,
) -> None:
    """Send the ``collector`` loggers to ``stream`` (stderr) in the chosen format, secrets masked
    by ``redactor`` (give it the configuration's secrets; by default it knows the patterns only)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redactor) if fmt == "json" else KeyValueFormatter(redactor))
    root = logging.getLogger("collector")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Database drivers' and the trace exporter's own warnings (psycopg's pool reporting a failed
    # reconnect, an OTLP export refused) in the same format and masked the same way, rather than
    # as bare lines from Python's last-resort handler. Their INFO is chatty
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
