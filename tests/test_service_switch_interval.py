"""The service shortens the interpreter's switch interval while it runs, and gives it back."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from collector.config import Config
from collector.service import GIL_SWITCH_INTERVAL_S, CollectorService


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


@pytest.mark.usefixtures("default_interval")
def test_an_embedding_application_can_keep_its_own(tmp_path: Path) -> None:
    service = CollectorService(_config(tmp_path), gil_switch_interval_s=None)
    service.start()
    try:
        assert sys.getswitchinterval() == pytest.approx(0.005)
    finally:
        service.stop()
