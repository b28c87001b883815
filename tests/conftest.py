"""Fixtures and settings shared by the test modules."""

import gc
import os
from collections.abc import Iterator

import pytest

from tests.mqtt_support import mqtt_broker, private_broker  # noqa: F401 - fixtures
from tests.pg import pg_conn, pg_table, postgres_server  # noqa: F401 - fixtures
from tests.writer_rig import writer_rigs  # noqa: F401 - fixture

# A service built from the environment in a test (or a `collector run` it starts) listens on a free
# port, never on the default 9108 that a running collector or another test run may hold. Tests that
# need to know the port set it themselves.
os.environ.setdefault("COLLECTOR_API__PORT", "0")


@pytest.fixture
def default_collector() -> Iterator[None]:
    """Python's own garbage collector settings (on, first threshold 700) for the test, and whatever
    was in force given back after it."""
    before, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(700, 10, 10)
    gc.enable()
    yield
    gc.set_threshold(*before)
    (gc.enable if enabled else gc.disable)()
