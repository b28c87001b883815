import io
import json
import logging

import pytest

from collector.logs import RateLimiter, configure_logging, log_event
from tests.fakes import ManualClock


@pytest.fixture(autouse=True)
def restore_logging():
    logger = logging.getLogger("collector")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_text_format_is_one_greppable_line_per_event():
    stream = io.StringIO()
    configure_logging("INFO", "text", stream)
    log_event(logging.getLogger("collector.test"), logging.WARNING, "buffer_overflow", dropped=12, note="a b")
    line = stream.getvalue().strip()
    assert "\n" not in line
    assert " WARNING collector.test event=buffer_overflow " in line
    assert "dropped=12" in line and 'note="a b"' in line


def test_json_format_carries_the_fields():
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    log_event(logging.getLogger("collector.test"), logging.ERROR, "values_lost", "backup failed", count=3)
    record = json.loads(stream.getvalue())
    assert record["event"] == "values_lost" and record["count"] == 3 and record["level"] == "ERROR"
    assert record["message"] == "backup failed"


def test_levels_below_the_threshold_are_not_written():
    stream = io.StringIO()
    configure_logging("WARNING", "text", stream)
    log_event(logging.getLogger("collector.test"), logging.INFO, "noise")
    assert stream.getvalue() == ""


def test_rate_limiter_allows_one_per_interval():
    clock = ManualClock()
    limiter = RateLimiter(10.0, clock)
    assert limiter.ready()
    assert not limiter.ready()
    clock.advance(9.9)
    assert not limiter.ready()
    clock.advance(0.1)
    assert limiter.ready()
