import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from collector.config import SECRET_MASK, ConfigError, load_config
from collector.redaction import redact_dsn

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_specifications():
    config = load_config(environ={}, env_file=None)
    assert config.buffer.max_size == 10_000
    assert (config.writer.batch_size, config.writer.flush_interval_s) == (500, 0.5)
    assert (config.writer.max_retries, config.writer.backoff_s) == (3, [1.0, 2.0, 4.0])
    assert config.sink.type == "sqlite" and config.sink.table == "TAG_DATA"
    assert (config.source.groups, config.source.tags_per_group, config.source.interval_s) == (10, 100, 1.0)
    assert config.api.port == 9108


def test_file_then_dotenv_then_environment(tmp_path):
    path = write(tmp_path, "writer: {batch_size: 100, workers: 3}\nbuffer: {max_size: 2000}\n")
    dotenv = tmp_path / ".env"
    dotenv.write_text("COLLECTOR_WRITER__BATCH_SIZE=200\nCOLLECTOR_BUFFER__MAX_SIZE=3000\n")
    config = load_config(path, environ={"COLLECTOR_WRITER__BATCH_SIZE": "300"}, env_file=dotenv)
    assert config.writer.batch_size == 300  # environment beats .env
    assert config.buffer.max_size == 3000  # .env beats the file
    assert config.writer.workers == 3  # the file beats the defaults


def test_environment_values_are_read_as_yaml_scalars():
    config = load_config(
        environ={"COLLECTOR_WRITER__BACKOFF_S": "[0.5, 1]", "COLLECTOR_BUFFER__SPILL_RATIO": "null"},
        env_file=None,
    )
    assert config.writer.backoff_s == [0.5, 1.0]
    assert config.buffer.spill_ratio is None


def test_seed_oracle_variables_select_and_configure_the_oracle_sink():
    env = {
        "ORACLE_HOST": "db.plant.local",
        "ORACLE_PORT": "1522",
        "ORACLE_SERVICE_NAME": "FREEPDB1",
        "ORACLE_USER": "collector",
        "ORACLE_PASSWORD": "s3cret",
    }
    config = load_config(environ=env, env_file=None)
    assert config.sink.type == "oracle"
    assert config.sink.connect_string() == "db.plant.local:1522/FREEPDB1"  # type: ignore[union-attr]
    assert config.sink.secret() == "s3cret"  # type: ignore[union-attr]
    shown = yaml.safe_dump(config.masked())
    assert "s3cret" not in shown and SECRET_MASK in shown


def test_oracle_variables_do_not_override_an_explicit_other_sink(tmp_path):
    path = write(tmp_path, "sink: {type: sqlite, path: x.db}\n")
    config = load_config(path, environ={"ORACLE_HOST": "h"}, env_file=None)
    assert config.sink.type == "sqlite"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (
            "writer: {batch_size: 0}",
            {},
            "writer.batch_size: Input should be greater than or equal to 1 (got 0)",
        ),
        ("writer: {batchsize: 10}", {}, "writer.batchsize: unknown key"),
        ("", {"COLLECTOR_WRITER__FLUSH_INTERVAL_S": "-1"}, "writer.flush_interval_s"),
        ("buffer: {max_size: lots}", {}, "buffer.max_size: Input should be a valid integer"),
        ("sink: {type: oracle, user: u, password: p}", {}, "sink: set dsn, or host and service_name"),
        ("sink: {type: mysql}", {}, "sink"),
        (
            "sink: {type: postgresql, host: h, pool_size: 2}\nwriter: {workers: 3}",
            {},
            "exceeds sink.pool_size",
        ),
        ("source: {groups: 10, tags: 5}", {}, "source.tags (5) is fewer than source.groups"),
        ("sink: {columns: {timestamp: 'ts; DROP TABLE x'}}", {}, "sink.columns.timestamp"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path, text, env, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=env, env_file=None)
    assert expected in str(info.value)


def test_a_password_is_never_echoed_in_errors(tmp_path):
    path = write(tmp_path, "sink: {type: oracle, host: h, service_name: s, user: u, password: [hunter2]}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={}, env_file=None)
    assert "hunter2" not in str(info.value)
    assert "sink.password" in str(info.value)


def test_unreadable_or_malformed_files_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "missing.yaml", environ={}, env_file=None)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "writer: [unclosed"), environ={}, env_file=None)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), environ={}, env_file=None)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://app:pw@db:5432/plant", f"postgresql://app:{SECRET_MASK}@db:5432/plant"),
        ("host=db user=app password=pw dbname=x", f"host=db user=app password={SECRET_MASK} dbname=x"),
        ("db.plant:1521/FREEPDB1", "db.plant:1521/FREEPDB1"),
    ],
)
def test_dsn_passwords_are_masked(dsn, shown):
    assert redact_dsn(dsn) == shown


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        check=False,
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_prints_the_effective_settings_masked(tmp_path):
    path = write(tmp_path, "sink: {type: postgresql, dsn: 'postgresql://app:topsecret@db/plant'}\n")
    done = run_cli("check-config", "--config", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = yaml.safe_load(done.stdout)
    assert shown["sink"]["dsn"] == f"postgresql://app:{SECRET_MASK}@db/plant"
    assert shown["writer"]["batch_size"] == 500
    assert "topsecret" not in done.stdout


def test_check_config_fails_with_exit_2_naming_the_key(tmp_path):
    done = run_cli("check-config", cwd=tmp_path, env={"COLLECTOR_WRITER__WORKERS": "0"})
    assert done.returncode == 2
    assert "writer.workers" in done.stderr


def test_run_with_bad_config_fails_at_start_without_touching_anything(tmp_path):
    path = write(tmp_path, "buffer: {max_size: -5}\n")
    done = run_cli("run", "--config", str(path), "--duration", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert "buffer.max_size" in done.stderr
    assert not (tmp_path / "data").exists()


def test_schema_prints_ddl_that_sqlite_accepts(tmp_path):
    import sqlite3

    done = run_cli("schema", "--dialect", "sqlite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(":memory:")
    conn.executescript(done.stdout)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(TAG_DATA)")]
    assert columns == ["tag_name", "tag_value", "tag_value_text", "timestamp", "quality"]
