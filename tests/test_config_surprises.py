"""Configuration surprises end in a clear error (or warning) that names the key or variable and
where its value came from; never a traceback, never a value silently changed or dropped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from collector import cli
from collector.config import (
    Config,
    ConfigError,
    OracleSinkConfig,
    PostgresSinkConfig,
    SqliteSinkConfig,
    load_config,
    read_config,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "collector.example.yaml"
POSTGRES = {"COLLECTOR_SINK__TYPE": "postgresql", "COLLECTOR_SINK__HOST": "db"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("COLLECTOR_", "ORACLE_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command in-process; it must fail as a configuration error, with no traceback."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG, err
    assert "Traceback" not in err
    return err


# --- secret values and DSNs are raw strings


@pytest.mark.parametrize(
    "password", ["123456", "yes", "#x", "null", "'quoted'", '"double"', " spaced ", "[a, b]", "a: b", "~"]
)
def test_a_password_from_the_environment_is_taken_exactly_as_given(password: str) -> None:
    config = load_config(environ={**POSTGRES, "COLLECTOR_SINK__PASSWORD": password}, env_file=None)
    assert isinstance(config.sink, PostgresSinkConfig)
    assert config.sink.secret() == password


@pytest.mark.parametrize("value", ["123456", "null", "yes"])
def test_other_text_keys_from_the_environment_are_text_too(value: str) -> None:
    config = load_config(
        environ={
            **POSTGRES,
            "COLLECTOR_SINK__USER": value,
            "COLLECTOR_SINK__DBNAME": value,
            "COLLECTOR_SINK__DSN": f"application_name={value}",
        },
        env_file=None,
    )
    assert isinstance(config.sink, PostgresSinkConfig)
    assert (config.sink.user, config.sink.dbname, config.sink.dsn) == (
        value,
        value,
        f"application_name={value}",
    )


def test_in_a_dotenv_file_quotes_are_dotenv_syntax_and_the_rest_is_raw(tmp_path: Path) -> None:
    dotenv = tmp_path / "plant.env"
    dotenv.write_text(
        "COLLECTOR_SINK__TYPE=postgresql\nCOLLECTOR_SINK__HOST=db\nCOLLECTOR_SINK__PASSWORD='#x y'\n"
        "COLLECTOR_SINK__USER=123456\n"
    )
    config = load_config(environ={}, env_file=dotenv)
    assert isinstance(config.sink, PostgresSinkConfig)
    assert (config.sink.secret(), config.sink.user) == ("#x y", "123456")


def test_numbers_lists_and_null_are_still_read_for_keys_that_take_them() -> None:
    config = load_config(
        environ={"COLLECTOR_WRITER__BACKOFF_S": "[0.5, 1]", "COLLECTOR_API__ENABLED": "no"}, env_file=None
    )
    assert (config.writer.backoff_s, config.api.enabled) == ([0.5, 1.0], False)


# --- password files


def oracle_with_password_file(path: Path) -> dict[str, str]:
    return {"ORACLE_DSN": "db:1521/FREEPDB1", "ORACLE_USER": "collector", "ORACLE_PASSWORD_FILE": str(path)}


def test_a_missing_password_file_names_the_key_and_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ=oracle_with_password_file(tmp_path / "absent"), env_file=None)
    message = str(info.value)
    assert "sink.password_file:" in message and "no such file" in message
    assert "[environment variable ORACLE_PASSWORD_FILE]" in message


@pytest.mark.parametrize("content", ["", "\n", "\n\nsecret\n"])
def test_an_empty_password_file_is_a_clear_error_not_an_index_error(
    tmp_path: Path, content: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "password"
    secret.write_text(content)
    secret.chmod(0o600)
    for name, value in oracle_with_password_file(secret).items():
        monkeypatch.setenv(name, value)
    err = refused(["check-config"], capsys)
    assert f"sink.password_file: {secret} is empty" in err
    assert "ORACLE_PASSWORD_FILE" in err


def test_a_directory_is_not_a_password_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sink\.password_file: .* is not a regular file"):
        load_config(environ=oracle_with_password_file(tmp_path), env_file=None)


def test_the_first_line_of_a_password_file_is_the_password_exactly(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(" pass word \r\nsecond line\n")
    secret.chmod(0o600)
    loaded = read_config(environ=oracle_with_password_file(secret), env_file=None)
    assert isinstance(loaded.config.sink, OracleSinkConfig)
    assert loaded.config.sink.secret() == " pass word "
    assert loaded.warnings == ()


def test_a_world_readable_password_file_is_a_warning_that_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    for name, value in oracle_with_password_file(secret).items():
        monkeypatch.setenv(name, value)
    assert cli.main(["check-config"]) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert f"warning: sink.password_file: {secret} can be read by every user" in err
    assert "mode 0644" in err and "chmod 600" in err and "ORACLE_PASSWORD_FILE" in err


# --- misnamed COLLECTOR_ variables and --env-file


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "COLLECTOR_WRITER_BATCH_SIZE",
            "environment variable COLLECTOR_WRITER_BATCH_SIZE: not a setting; a section and its key are"
            " joined by two underscores: COLLECTOR_WRITER__BATCH_SIZE?",
        ),
        (
            "collector_writer__batch_size",
            "environment variable collector_writer__batch_size: environment variable names are upper case:"
            " COLLECTOR_WRITER__BATCH_SIZE?",
        ),
        ("Collector_Writer__Batch_Size", "environment variable Collector_Writer__Batch_Size: "),
        (
            "COLLECTOR_WRITER__BATCHSIZE",
            "writer.batchsize: unknown key [environment variable COLLECTOR_WRITER__BATCHSIZE]",
        ),
        (
            "COLLECTOR_WRITR__BATCH_SIZE",
            "writr: unknown key [environment variable COLLECTOR_WRITR__BATCH_SIZE]",
        ),
        ("COLLECTOR_WRITER__", "environment variable COLLECTOR_WRITER__: empty section or key"),
        ("COLLECTOR_BATCH_SIZE", "environment variable COLLECTOR_BATCH_SIZE: not a setting"),
        (
            "COLLECTOR_WRITER__BATCH_SIZE__X",
            "environment variable COLLECTOR_WRITER__BATCH_SIZE__X: writer.batch_size is not a section",
        ),
    ],
)
def test_a_misnamed_collector_variable_is_an_error_naming_it(
    name: str, expected: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLLECTOR_WRITER__BATCH_SIZE", "7")  # a right one beside it
    monkeypatch.setenv(name, "100")
    assert expected in refused(["check-config"], capsys)


def test_collector_config_is_not_a_setting_and_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTOR_CONFIG", str(EXAMPLE))
    assert cli.main(["check-config"]) == cli.EXIT_OK


def test_a_misnamed_variable_in_dotenv_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("COLLECTOR_API_PORT=9200\n")
    with pytest.raises(ConfigError) as info:
        load_config(environ={})
    assert f"COLLECTOR_API_PORT in {tmp_path / '.env'}: not a setting" in str(info.value)
    assert "COLLECTOR_API__PORT?" in str(info.value)


def test_a_named_env_file_that_is_missing_is_an_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(["check-config", "--env-file", "plant.env"], capsys)
    assert "--env-file plant.env does not exist" in err


def test_without_env_file_a_missing_dotenv_is_fine(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config"]) == cli.EXIT_OK


def test_no_env_file_leaves_the_working_directorys_dotenv_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".env").write_text("COLLECTOR_WRITER__BATCH_SIZE=0\n")
    assert "writer.batch_size" in refused(["check-config"], capsys)
    assert cli.main(["check-config", "--no-env-file"]) == cli.EXIT_OK


def test_the_compose_dotenv_example_is_a_valid_dotenv_for_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run from a checkout set up as docs/security.md says: the password in secrets/, not in .env.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secrets").mkdir(mode=0o700)
    (tmp_path / "secrets" / "oracle_password").write_text("example\n", encoding="utf-8")
    config = load_config(environ={}, env_file=ROOT / ".env.example")
    assert isinstance(config.sink, OracleSinkConfig)
    assert config.sink.secret() == "example"


# --- every error says where the value came from


def test_each_error_names_the_file_dotenv_or_variable_its_value_came_from(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text("writer: {batch_size: 0}\nbuffer: {max_size: -1}\n")
    dotenv = tmp_path / "plant.env"
    dotenv.write_text("COLLECTOR_BUFFER__MAX_SIZE=lots\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"COLLECTOR_API__PORT": "70000"}, env_file=dotenv)
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert any(line.startswith("  writer.batch_size:") and line.endswith(f"[{path}]") for line in lines)
    assert any(
        line.startswith("  buffer.max_size:") and line.endswith(f"[COLLECTOR_BUFFER__MAX_SIZE in {dotenv}]")
        for line in lines
    )
    assert any(
        line.startswith("  api.port:") and line.endswith("[environment variable COLLECTOR_API__PORT]")
        for line in lines
    )


# --- the implicit Oracle switch


def test_oracle_host_alone_says_it_switched_the_sink(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORACLE_HOST", "db.plant")
    err = refused(["check-config"], capsys)
    assert "sink: set dsn, or host and service_name" in err
    assert "the sink is Oracle because environment variable ORACLE_HOST is set" in err
    assert "set sink.type or COLLECTOR_SINK__TYPE" in err


def test_a_complete_oracle_environment_works_with_a_note_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "ORACLE_HOST": "db.plant",
        "ORACLE_SERVICE_NAME": "FREEPDB1",
        "ORACLE_USER": "collector",
        "ORACLE_PASSWORD": "s3cret",
    }.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["check-config"]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["sink"]["type"] == "oracle"
    assert "note: the sink is Oracle because environment variable ORACLE_HOST is set" in err


def test_credentials_in_an_oracle_dsn_and_in_user_are_one_place_too_many() -> None:
    with pytest.raises(ConfigError, match="dsn carries a user/password") as info:
        load_config(
            environ={"ORACLE_DSN": "collector/s3cret@db:1521/FREEPDB1", "ORACLE_USER": "other"},
            env_file=None,
        )
    assert "s3cret" not in str(info.value)


def test_credentials_in_an_oracle_dsn_become_user_and_password() -> None:
    config = load_config(environ={"ORACLE_DSN": 'collector/"pa ss@w/rd"@db:1521/FREEPDB1'}, env_file=None)
    sink = config.sink
    assert isinstance(sink, OracleSinkConfig)
    assert (sink.user, sink.secret(), sink.connect_string()) == (
        "collector",
        "pa ss@w/rd",
        "db:1521/FREEPDB1",
    )
    assert sink.target() == "db:1521/FREEPDB1"


# --- the example configuration


def test_the_example_configuration_passes_check_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", "--config", str(EXAMPLE)]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    assert err == ""
    assert yaml.safe_load(out)["writer"]["batch_size"] == 500


def test_the_example_configuration_states_the_defaults() -> None:
    assert load_config(EXAMPLE, environ={}, env_file=None) == load_config(environ={}, env_file=None)


def keys(model: type[BaseModel]) -> set[str]:
    found = set()
    for name, info in model.model_fields.items():
        found.add(name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= keys(annotation)
    return found


def test_the_example_configuration_mentions_every_key() -> None:
    text = EXAMPLE.read_text()
    every = keys(Config) | keys(SqliteSinkConfig) | keys(OracleSinkConfig) | keys(PostgresSinkConfig)
    every -= {"password"}  # shown only as the alternative it should be: password_file
    missing = sorted(key for key in every if f"{key}:" not in text)
    assert not missing, f"collector.example.yaml does not mention {missing}"


@pytest.mark.slow
def test_the_real_command_validates_the_example(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "collector", "check-config", "--config", str(EXAMPLE)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["sink"]["path"] == "data/tags.db"
