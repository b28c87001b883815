"""Defaults the service chooses itself: writer threads per database, the switch interval, how often
the cyclic garbage collector runs."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

from collector.config import Config
from collector.interpreter import BULK_FIRST_THRESHOLD, GIL_SWITCH_INTERVAL_S
from collector.service import CollectorService
from tests.fakes import MemorySink


def _config(tmp_path: Path) -> Config:
    return Config.model_validate(
        {
            "source": {"type": "external"},
            "sink": {"type": "sqlite", "path": str(tmp_path / "tags.db")},
            "backup": {"dir": str(tmp_path / "backup")},
            "api": {"enabled": False},
        }
    )


@pytest.fixture
def default_interval() -> object:
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("default_interval")
def test_the_interval_is_short_while_the_service_runs_and_restored_after(tmp_path: Path) -> None:
    service = CollectorService(_config(tmp_path))
    service.start()
    try:
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
    finally:
        service.stop()
    assert sys.getswitchinterval() == pytest.approx(0.005)


@pytest.mark.usefixtures("default_collector")
def test_the_collector_runs_less_often_while_the_service_runs_and_as_before_after(
    tmp_path: Path,
) -> None:
    service = CollectorService(_config(tmp_path))
    service.start()
    try:
        assert gc.get_threshold() == (BULK_FIRST_THRESHOLD, 10, 10)
    finally:
        service.stop()
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.usefixtures("default_collector")
def test_an_embedding_application_can_keep_its_own_collector_settings(tmp_path: Path) -> None:
    service = CollectorService(_config(tmp_path), gc_first_threshold=None)
    service.start()
    try:
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        service.stop()


@pytest.mark.usefixtures("default_interval")
def test_an_embedding_application_can_keep_its_own(tmp_path: Path) -> None:
    service = CollectorService(_config(tmp_path), gil_switch_interval_s=None)
    service.start()
    try:
        assert sys.getswitchinterval() == pytest.approx(0.005)
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("sink", "writer", "expected"),
    [
        ({"type": "sqlite"}, {}, 1),
        ({"type": "postgresql", "dsn": "host=db"}, {}, 4),
        ({"type": "postgresql", "dsn": "host=db"}, {"workers": 2}, 2),
        ({"type": "sqlite"}, {"workers": 3}, 3),
    ],
)
def test_writer_threads_are_the_measured_default_unless_configured(
    tmp_path: Path, sink: dict[str, str], writer: dict[str, int], expected: int
) -> None:
    config = Config.model_validate(
        {
            "source": {"type": "external"},
            "sink": {**sink, "path": str(tmp_path / "tags.db")} if sink["type"] == "sqlite" else sink,
            "writer": writer,
            "backup": {"dir": str(tmp_path / "backup")},
            "api": {"enabled": False},
        }
    )
    service = CollectorService(config, sink=MemorySink())
    service.start()
    try:
        assert service.workers == expected
        assert (
            len([t for t in service.writer.threads if t.name.startswith("writer-") and t.name[-1].isdigit()])
            == expected
        )
    finally:
        service.stop()
