"""The startup line and the status API say where the data goes: the database target without
credentials, and the backup directories as absolute paths, though the configuration gives them
relative to the working directory."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path

import pytest

from collector.config import load_config
from collector.service import CollectorService

PASSWORD = "s3cret-pw"


def test_relative_paths_are_shown_absolute_in_the_startup_line_and_the_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(
        None,
        environ={
            "COLLECTOR_SOURCE__GROUPS": "1",
            "COLLECTOR_SOURCE__TAGS_PER_GROUP": "10",
            "COLLECTOR_SINK__PATH": "data/tags.db",
            "COLLECTOR_BACKUP__DIR": "spool",
            "COLLECTOR_BACKUP__FALLBACK_DIR": "../elsewhere",
            "COLLECTOR_API__PORT": "0",
        },
        env_file=None,
    )
    service = CollectorService(config)
    with caplog.at_level(logging.INFO, logger="collector"):
        service.start()
    try:
        assert service.api is not None
        with urllib.request.urlopen(f"{service.api.url}/api/v1/status", timeout=10) as response:
            shown = json.load(response)["service"]
    finally:
        service.stop()
    (started,) = [r for r in caplog.records if getattr(r, "collector_event", "") == "service_started"]
    fields = started.collector_fields  # type: ignore[attr-defined]
    expected = {
        "database": str(tmp_path / "data" / "tags.db"),
        "backup_dir": str(tmp_path / "spool"),
        "fallback_dir": str(tmp_path / ".." / "elsewhere"),
    }
    for key, path in expected.items():
        assert fields[key] == path, key
        assert shown[key] == path, key
        assert Path(path).is_absolute()


@pytest.mark.parametrize(
    ("sink", "target"),
    [
        (
            {"type": "postgresql", "dsn": f"postgresql://app:{PASSWORD}@db.plant:5433/tags"},
            "db.plant:5433/tags",
        ),
        (
            {"type": "postgresql", "dsn": f"host=db.plant dbname=tags user=app password={PASSWORD}"},
            "db.plant/tags",
        ),
        (
            {"type": "oracle", "dsn": f"app/{PASSWORD}@db.plant:1521/FREEPDB1"},
            "db.plant:1521/FREEPDB1",
        ),
        (
            {
                "type": "oracle",
                "host": "db.plant",
                "service_name": "FREEPDB1",
                "user": "app",
                "password": PASSWORD,
            },
            "db.plant:1521/FREEPDB1",
        ),
    ],
)
def test_the_database_target_is_shown_without_credentials(
    sink: dict[str, str], target: str, tmp_path: Path
) -> None:
    config = load_config(
        None,
        environ={f"COLLECTOR_SINK__{key.upper()}": value for key, value in sink.items()}
        | {"COLLECTOR_BACKUP__DIR": str(tmp_path / "backup"), "COLLECTOR_API__ENABLED": "false"},
        env_file=None,
    )
    service = CollectorService(config, sink=_NoSink())
    info = service.service_info()
    assert info.database == target
    assert PASSWORD not in info.database and "app" not in info.database


class _NoSink:
    """Stands in for the database: these checks never write."""

    table = "TAG_DATA"

    def write(self, batch: object) -> None:
        raise AssertionError("nothing is written here")

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass
