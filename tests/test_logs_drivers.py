"""Database drivers' warnings come out in the collector's log format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from collector.logs import DRIVER_LOGGERS, configure_logging


@pytest.fixture
def restored_loggers() -> Iterator[None]:
    names = ("collector", *DRIVER_LOGGERS)
    saved = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
        for n in names
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.usefixtures("restored_loggers")
def test_psycopg_pool_warnings_are_json_lines_and_its_chatter_is_not_logged() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)

    pool_log = logging.getLogger("psycopg.pool")
    pool_log.info("connection requested from 'collector-postgresql'")
    pool_log.warning("error connecting in 'collector-postgresql': connection refused")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert (record["logger"], record["level"]) == ("psycopg.pool", "WARNING")
    assert "connection refused" in record["message"]
