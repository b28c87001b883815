"""The Oracle connection settings: the seed's ORACLE_* variables, the file, and their precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import ConfigError, OracleSinkConfig, load_config

FILE = """
sink:
  type: oracle
  host: file-host
  service_name: FILEPDB
  user: file_user
  password: file-secret
"""


def _oracle(config_path: Path | None, environ: dict[str, str]) -> OracleSinkConfig:
    sink = load_config(config_path, environ=environ, env_file=None).sink
    assert isinstance(sink, OracleSinkConfig)
    return sink


def test_seed_variables_alone_select_and_configure_the_oracle_sink() -> None:
    sink = _oracle(
        None,
        {
            "ORACLE_HOST": "db.plant",
            "ORACLE_PORT": "1522",
            "ORACLE_SERVICE_NAME": "FREEPDB1",
            "ORACLE_USER": "collector",
            "ORACLE_PASSWORD": "s3cret",
        },
    )
    assert sink.connect_string() == "db.plant:1522/FREEPDB1"
    assert sink.user == "collector"
    assert sink.secret() == "s3cret"
    assert sink.pool_size == 5


def test_seed_variables_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(FILE)
    sink = _oracle(path, {"ORACLE_HOST": "env-host", "ORACLE_PASSWORD": "env-secret"})
    assert sink.host == "env-host"
    assert sink.secret() == "env-secret"
    assert sink.service_name == "FILEPDB"  # not given in the environment: the file's value stays


def test_prefixed_variable_beats_the_seed_variable(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(FILE)
    sink = _oracle(path, {"ORACLE_HOST": "seed-host", "COLLECTOR_SINK__HOST": "prefixed-host"})
    assert sink.host == "prefixed-host"


def test_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "oracle-password"
    secret.write_text("from-file\n")
    sink = _oracle(
        None,
        {
            "ORACLE_DSN": "db:1521/FREEPDB1",
            "ORACLE_USER": "collector",
            "ORACLE_PASSWORD_FILE": str(secret),
        },
    )
    assert sink.secret() == "from-file"


def test_missing_user_is_reported_with_the_variable_to_set() -> None:
    with pytest.raises(ConfigError, match="ORACLE_USER"):
        load_config(None, environ={"ORACLE_DSN": "db/FREEPDB1", "ORACLE_PASSWORD": "x"}, env_file=None)
