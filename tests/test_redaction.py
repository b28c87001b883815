"""Secrets never printed: every connect-string form the drivers accept, through every path that
prints one (check-config, configuration errors, log lines in both formats, the command's error
paths, the trace endpoint line, the safe target for spans and the status API)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import oracledb
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from collector import cli
from collector.config import load_config
from collector.logs import DRIVER_LOGGERS, configure_logging, log_event, log_failure
from collector.redaction import MASK, Redactor, dsn_secrets, dsn_target, redact_dsn
from collector.telemetry.tracing import configure_tracing

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Form:
    kind: str  # "oracle", "postgresql" or "otlp"
    dsn: str
    secret: str  # as the driver would decode it
    target: str  # what dsn_target shows


FORMS = [
    Form("oracle", "collector/s3cret-pw@db.plant:1521/FREEPDB1", "s3cret-pw", "db.plant:1521/FREEPDB1"),
    Form("oracle", "collector/s3cret-pw@//db.plant:1521/FREEPDB1", "s3cret-pw", "db.plant:1521/FREEPDB1"),
    Form("oracle", 'collector/"pa ss@/wd"@db.plant:1521/FREEPDB1', "pa ss@/wd", "db.plant:1521/FREEPDB1"),
    Form("oracle", "collector/pa ss word@db.plant:1521/FREEPDB1", "pa ss word", "db.plant:1521/FREEPDB1"),
    Form("oracle", "collector/p@ss/w0rd@db.plant:1521/FREEPDB1", "p@ss/w0rd", "db.plant:1521/FREEPDB1"),
    Form(
        "oracle",
        "collector/s3cret-pw@tcps://db.plant:2484/FREEPDB1?wallet_location=/w&ssl_server_dn_match=true",
        "s3cret-pw",
        "db.plant:2484/FREEPDB1",
    ),
    Form(
        "oracle",
        "db.plant:1521/FREEPDB1?transport_connect_timeout=5&wallet_password=s3cret-pw",
        "s3cret-pw",
        "db.plant:1521/FREEPDB1",
    ),
    Form(
        "oracle",
        "collector/s3cret-pw@(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=db.plant)(PORT=1521))"
        "(CONNECT_DATA=(SERVICE_NAME=FREEPDB1)))",
        "s3cret-pw",
        "db.plant:1521/FREEPDB1",
    ),
    Form(
        "oracle",
        "(DESCRIPTION=(ADDRESS=(PROTOCOL=TCPS)(HOST=db.plant)(PORT=2484))"
        "(SECURITY=(WALLET_PASSWORD=s3cret-pw))(CONNECT_DATA=(SID=ORCL)))",
        "s3cret-pw",
        "db.plant:2484/ORCL",
    ),
    Form("oracle", "collector/s3cret-pw@plantdb_high", "s3cret-pw", "plantdb_high"),
    Form("postgresql", "postgresql://app:s3cret-pw@db.plant:5432/plant", "s3cret-pw", "db.plant:5432/plant"),
    Form(
        "postgresql",
        "postgres://app:p%40ss%2Fw%20rd@db.plant/plant?sslmode=require",
        "p@ss/w rd",
        "db.plant/plant",
    ),
    Form(
        "postgresql",
        "postgresql://db.plant/plant?user=app&password=s3cret-pw",
        "s3cret-pw",
        "db.plant/plant",
    ),
    Form(
        "postgresql",
        "host=db.plant port=5432 dbname=plant user=app password=s3cret-pw",
        "s3cret-pw",
        "db.plant:5432/plant",
    ),
    Form(
        "postgresql",
        "host=db.plant dbname=plant user=app password='pa ss\\' w@rd'",
        "pa ss' w@rd",
        "db.plant/plant",
    ),
    # Malformed: libpq refuses these, and its message quotes what it refused.
    Form("postgresql", "postgresql://app:pa ss@db.plant/plant", "pa ss", "db.plant/plant"),
    Form("postgresql", "postgresql://app:pa/ss@db.plant/plant", "pa/ss", "db.plant/plant"),
    Form("postgresql", "postgresql://app:s3cret-pw@[db.plant/plant", "s3cret-pw", "[db.plant/plant"),
    Form("postgresql", "postgresql://app:s3cret-pw@db.plant/plant?bogus=1", "s3cret-pw", "db.plant/plant"),
    Form("otlp", "http://user:s3cret-pw@collector.plant:4318", "s3cret-pw", "collector.plant:4318"),
    Form("otlp", "https://user:p%40ss%2F@collector.plant:4318/v1/traces", "p@ss/", "collector.plant:4318/v1"),
]

IDS = [f"{form.kind}-{index}" for index, form in enumerate(FORMS)]
DB_FORMS = [form for form in FORMS if form.kind != "otlp"]
DB_IDS = [i for i, form in zip(IDS, FORMS, strict=True) if form.kind != "otlp"]


def hidden(form: Form, text: str) -> bool:
    """Neither the secret as written in the DSN nor as the driver decodes it appears in ``text``."""
    return all(secret not in text for secret in {form.secret, *dsn_secrets(form.dsn)})


@pytest.mark.parametrize("form", FORMS, ids=IDS)
def test_redact_dsn_hides_the_password_and_keeps_where_it_points(form: Form) -> None:
    shown = redact_dsn(form.dsn)
    assert hidden(form, shown)
    assert MASK in shown
    assert (dsn_target(form.dsn).address or dsn_target(form.dsn).alias or "") in shown


@pytest.mark.parametrize("form", FORMS, ids=IDS)
def test_dsn_secrets_finds_the_password_the_driver_would_use(form: Form) -> None:
    assert form.secret in dsn_secrets(form.dsn)


@pytest.mark.parametrize("form", FORMS, ids=IDS)
def test_the_target_names_host_port_and_database_without_credentials(form: Form) -> None:
    target = dsn_target(form.dsn)
    assert str(target) == form.target
    assert hidden(form, str(target)) and "collector/" not in str(target) and "app" not in str(target)


def test_the_target_gives_the_span_its_namespace() -> None:
    target = dsn_target("collector/FREEPDB1@db.plant:1521/FREEPDB2")
    # The password looks like a service name; the namespace is the service after the host.
    assert (target.address, target.port, target.namespace) == ("db.plant", 1521, "FREEPDB2")


def driver_messages(form: Form) -> list[str]:
    """What the real driver says about this connect string, without a network: its parser's error."""
    messages = []
    try:
        if form.kind == "oracle":
            oracledb.ConnectParams().parse_connect_string(form.dsn)
        else:
            conninfo_to_dict(form.dsn)
    except (oracledb.Error, psycopg.Error) as exc:
        messages.append(str(exc))
    return messages


@pytest.mark.parametrize("form", DB_FORMS, ids=DB_IDS)
def test_a_driver_error_quoting_the_connect_string_is_masked(form: Form) -> None:
    redact = Redactor(dsn_secrets(form.dsn))
    samples = [
        *driver_messages(form),
        f'DPY-4018: cannot parse connect string "{form.dsn}"',
        f"connection to {form.dsn} failed",
    ]
    for sample in samples:
        assert hidden(form, redact(sample)), sample


@pytest.fixture
def restored_loggers() -> Iterator[None]:
    names = ("collector", *DRIVER_LOGGERS)
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level) for n in names}
    yield
    for name, (handlers, level) in saved.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restored_loggers")
@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("form", FORMS, ids=IDS)
def test_log_lines_never_carry_the_password(form: Form, fmt: str) -> None:
    stream = io.StringIO()
    configure_logging("INFO", fmt, stream, redactor=Redactor(dsn_secrets(form.dsn)))
    log = logging.getLogger("collector.cli")
    driver_error = RuntimeError(f'DPY-4018: cannot parse connect string "{form.dsn}"')
    log_event(log, logging.CRITICAL, "startup_failed", f"oracle sink refused: {driver_error}")
    log_event(log, logging.ERROR, "sink_unavailable_at_start", error=str(driver_error), dsn=form.dsn)
    try:
        raise driver_error
    except RuntimeError as exc:
        log_failure(log, logging.CRITICAL, "startup_failed", "cannot open the sink", exc)
    logging.getLogger("psycopg.pool").warning("error connecting to %s", form.dsn)

    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    if fmt == "json":
        assert [json.loads(line)["level"] for line in lines] == ["CRITICAL", "ERROR", "CRITICAL", "WARNING"]
    assert hidden(form, stream.getvalue())
    assert "cannot parse connect string" in lines[0] and MASK in lines[0]


@pytest.mark.usefixtures("restored_loggers")
def test_a_short_known_secret_is_left_to_the_patterns() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream, redactor=Redactor(["pw"]))
    log_event(logging.getLogger("collector.x"), logging.INFO, "e", "upward", dsn="app/pw@db/x")
    assert "upward" in stream.getvalue()  # two letters are not hunted through every line
    assert "app/pw@" not in stream.getvalue()


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith(("COLLECTOR_", "ORACLE_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def sink_variables(form: Form) -> dict[str, str]:
    if form.kind == "oracle":
        return {"ORACLE_DSN": form.dsn, "ORACLE_PASSWORD": "not-this-one"} | (
            {} if "@" in form.dsn and not form.dsn.startswith("(") else {"ORACLE_USER": "collector"}
        )
    return {"COLLECTOR_SINK__TYPE": "postgresql", "COLLECTOR_SINK__DSN": form.dsn}


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize("form", DB_FORMS, ids=DB_IDS)
def test_check_config_and_its_errors_never_print_the_password(
    form: Form, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    variables = sink_variables(form)
    if form.kind == "oracle" and "ORACLE_USER" not in variables:
        variables.pop("ORACLE_PASSWORD")  # the DSN carries the credentials
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    code = cli.main(["check-config"])
    out, err = capsys.readouterr()
    assert hidden(form, out + err)
    malformed = form.kind == "postgresql" and bool(driver_messages(form))
    if malformed:
        assert code == cli.EXIT_CONFIG
        assert "sink.dsn: not a valid connection string" in err
        assert "COLLECTOR_SINK__DSN" in err
    else:
        assert code == cli.EXIT_OK, err
        assert MASK in out

    # Another mistake next to it: the error lists the DSN's key without its password.
    monkeypatch.setenv("COLLECTOR_SINK__POOL_SIZE", "0")
    assert cli.main(["check-config"]) == cli.EXIT_CONFIG
    out, err = capsys.readouterr()
    assert "sink.pool_size" in err and "COLLECTOR_SINK__POOL_SIZE" in err
    assert hidden(form, out + err)


@pytest.mark.usefixtures("clean_environment")
def test_an_unexpected_error_in_a_command_is_reported_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    form = FORMS[3]
    monkeypatch.setenv("ORACLE_DSN", form.dsn)

    def fails(*_args: object) -> int:
        raise ValueError(f"DPY-4018: cannot parse connect string {form.dsn!r}")

    monkeypatch.setattr(cli, "_backups", fails)
    assert cli.main(["backups"]) == cli.EXIT_FAILURE
    _, err = capsys.readouterr()
    assert "unexpected error: ValueError: DPY-4018" in err and "Traceback" in err
    assert hidden(form, err)


@pytest.mark.usefixtures("restored_loggers")
@pytest.mark.parametrize("form", [f for f in FORMS if f.kind == "otlp"], ids=["otlp-plain", "otlp-encoded"])
def test_the_trace_endpoint_is_logged_without_its_password(form: Form) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    tracing = configure_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": form.dsn})
    try:
        (line,) = [json.loads(x) for x in stream.getvalue().splitlines() if "tracing_enabled" in x]
    finally:
        tracing.shutdown()
    assert line["endpoint"] == redact_dsn(form.dsn)
    assert "collector.plant:4318" in line["endpoint"] and hidden(form, stream.getvalue())


def test_the_redactor_knows_the_configured_and_the_exporter_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(
        environ={"ORACLE_DSN": "db:1521/FREEPDB1", "ORACLE_USER": "u", "ORACLE_PASSWORD": "plain-pass"},
        env_file=None,
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Basic%20dXNlcjpwYXNz,x-api-key=k3y-value")
    redact = cli.redactor_for(config)
    said = redact("login plain-pass refused; header Basic dXNlcjpwYXNz and k3y-value sent")
    assert "plain-pass" not in said and "dXNlcjpwYXNz" not in said and "k3y-value" not in said
    assert said.startswith("login ") and "refused" in said


@pytest.mark.slow
@pytest.mark.parametrize(
    "variables",
    [
        # The driver refuses the option and quotes the whole string in its DPY-4018.
        {
            "ORACLE_DSN": "127.0.0.1:1/FREEPDB1?wallet_password=s3cret-pw&bogus",
            "ORACLE_USER": "collector",
            "ORACLE_PASSWORD": "an0ther-secret",
        },
        # Credentials inside the DSN: held as the password, the driver sees only the rest.
        {"ORACLE_DSN": "collector/s3cret-pw@127.0.0.1:1/FREE PDB1"},
    ],
    ids=["option", "credentials"],
)
def test_the_critical_startup_line_of_the_real_command_carries_no_password(
    tmp_path: Path, variables: dict[str, str]
) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "COLLECTOR_API__ENABLED": "false", **variables}
    done = subprocess.run(
        [sys.executable, "-m", "collector", "run", "--duration", "5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == cli.EXIT_STARTUP, done.stderr
    assert "event=startup_failed" in done.stderr and "DPY-4018" in done.stderr
    assert "Traceback" not in done.stderr
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert "an0ther-secret" not in done.stdout + done.stderr


@pytest.mark.usefixtures("clean_environment", "restored_loggers")
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_replay_reports_the_database_error_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    from tests.recovery_support import sample_values, write_backup

    backups = tmp_path / "waiting"
    backups.mkdir()
    write_backup(backups, sample_values(20))
    # The driver refuses the option and quotes the whole connect string, password and all.
    monkeypatch.setenv("ORACLE_DSN", "127.0.0.1:1/FREEPDB1?wallet_password=s3cret-pw&bogus")
    monkeypatch.setenv("ORACLE_USER", "collector")
    monkeypatch.setenv("ORACLE_PASSWORD", "an0ther-secret")

    code = cli.main(["replay", *(["--json"] if as_json else []), str(backups)])
    out, err = capsys.readouterr()
    assert code != cli.EXIT_OK
    assert "DPY-4018" in out + err
    assert "s3cret-pw" not in out + err and "an0ther-secret" not in out + err
    if as_json:
        json.loads(out)


@pytest.mark.parametrize(
    ("variables", "shown"),
    [
        ({}, str(Path("data/tags.db").absolute())),
        (
            {
                "COLLECTOR_SINK__TYPE": "postgresql",
                "COLLECTOR_SINK__DSN": "postgresql://app:s3cret-pw@db:5433/plant",
            },
            "db:5433/plant",
        ),
        (
            {
                "COLLECTOR_SINK__TYPE": "postgresql",
                "COLLECTOR_SINK__DSN": "user=app password=s3cret-pw dbname=plant",
                "COLLECTOR_SINK__HOST": "db2",
            },
            "db2:5432/plant",
        ),
        ({"ORACLE_DSN": "collector/s3cret-pw@db:1521/FREEPDB1"}, "db:1521/FREEPDB1"),
        (
            {
                "ORACLE_HOST": "db",
                "ORACLE_SERVICE_NAME": "FREEPDB1",
                "ORACLE_USER": "u",
                "ORACLE_PASSWORD": "s3cret-pw",
            },
            "db:1521/FREEPDB1",
        ),
    ],
    ids=["sqlite", "postgresql-uri", "postgresql-keys-over-conninfo", "oracle-dsn", "oracle-keys"],
)
def test_the_sink_target_for_the_startup_line_and_the_status_api(
    variables: dict[str, str], shown: str
) -> None:
    config = load_config(environ=variables, env_file=None)
    assert config.sink.target() == shown
    assert "s3cret-pw" not in config.sink.target()
