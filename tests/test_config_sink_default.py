"""A sink section that names no type adjusts the default (SQLite) sink."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import ConfigError, SqliteSinkConfig, load_config


def test_an_environment_key_for_the_sink_without_a_type_adjusts_the_sqlite_default(tmp_path: Path) -> None:
    environ = {"COLLECTOR_SINK__PATH": str(tmp_path / "plant.db"), "COLLECTOR_SINK__TABLE": "TAG_HISTORY"}

    config = load_config(None, environ=environ, env_file=None)

    assert isinstance(config.sink, SqliteSinkConfig)
    assert (config.sink.path, config.sink.table) == (tmp_path / "plant.db", "TAG_HISTORY")


def test_a_yaml_sink_section_without_a_type_is_the_sqlite_sink(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text("sink: {table: TAG_HISTORY}\n")

    config = load_config(path, environ={}, env_file=None)

    assert isinstance(config.sink, SqliteSinkConfig)
    assert config.sink.table == "TAG_HISTORY"


def test_a_key_of_another_sink_without_its_type_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text("sink: {dbname: history}\n")

    with pytest.raises(ConfigError, match=r"sink\.dbname: unknown key"):
        load_config(path, environ={}, env_file=None)
