"""deploy/systemd: the unit is hardened as docs/deployment.md says, it agrees with the configuration
it ships and with the ``collector`` wrapper, systemd accepts it, and its stop timeout leaves the
service time to save what it holds."""

from __future__ import annotations

import getpass
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from collector.config import OracleSinkConfig, PostgresSinkConfig, WriterConfig, load_config
from tests.ci import require_program

UNIT_DIR = Path(__file__).resolve().parents[1] / "deploy" / "systemd"
UNIT = UNIT_DIR / "collector.service"
WRAPPER = UNIT_DIR / "collector-cli.sh"
CONFIG = UNIT_DIR / "collector.yaml"


def read_unit(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value given (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        sections[section][key.strip()].append(value.strip())
    return sections


def one(service: dict[str, list[str]], key: str) -> str:
    (value,) = service[key]
    return value


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min)?", value)
    assert match, f"unreadable time span {value!r}"
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


def wrapper_default(name: str) -> str:
    match = re.search(rf'"\$\{{{name}:-([^}}]+)\}}"', WRAPPER.read_text(encoding="utf-8"))
    assert match, f"the wrapper has no default for {name}"
    return match.group(1)


def test_the_service_runs_as_its_own_user_on_a_read_only_system() -> None:
    service = read_unit()["Service"]
    assert one(service, "User") == "collector" and one(service, "Group") == "collector"
    assert one(service, "ProtectSystem") == "strict"
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices", "RestrictSUIDSGID"):
        assert one(service, key) == "yes", key
    assert one(service, "CapabilityBoundingSet") == "", "the service needs no capability"
    assert one(service, "UMask") == "0077", "data and backups must be the service's alone"


def test_everything_the_service_writes_is_a_writable_path() -> None:
    service = read_unit()["Service"]
    writable = [Path(p.lstrip("-")) for v in service["ReadWritePaths"] for p in v.split()]
    config = load_config(CONFIG, environ={}, env_file=None)
    workdir = Path(one(service, "WorkingDirectory"))
    wanted = {
        "the database": workdir / config.sink.path.parent,  # type: ignore[union-attr]
        "the backups": workdir / config.backup.dir,
        "the write-ahead log": workdir / config.wal_dir,
        "the log directory": Path("/var/log") / one(service, "LogsDirectory"),
    }
    for what, path in wanted.items():
        assert path.is_absolute()
        assert any(path == w or w in path.parents for w in writable), f"{what} ({path}) is not writable"
    assert Path("/var/lib") / one(service, "StateDirectory") == workdir


def test_restart_on_failure_but_not_when_a_restart_cannot_help() -> None:
    service = read_unit()["Service"]
    assert one(service, "Restart") == "on-failure"
    assert seconds(one(service, "RestartSec")) >= 1
    # 2: invalid configuration, 3: the database refused the login or the schema (collector.cli).
    assert set(one(service, "RestartPreventExitStatus").split()) == {"2", "3"}
    unit = read_unit()["Unit"]
    assert int(one(unit, "StartLimitBurst")) >= 1 and seconds(one(unit, "StartLimitIntervalSec")) > 0


def test_the_stop_timeout_outlasts_the_drain_and_a_blocked_database_call() -> None:
    service = read_unit()["Service"]
    assert one(service, "KillSignal") == "SIGTERM"
    drain = WriterConfig.model_fields["shutdown_timeout_s"].default
    blocked_call = max(
        model.model_fields["call_timeout_s"].default for model in (OracleSinkConfig, PostgresSinkConfig)
    )
    assert seconds(one(service, "TimeoutStopSec")) >= 2 * (drain + blocked_call)


def test_the_open_file_limit_is_raised() -> None:
    assert int(one(read_unit()["Service"], "LimitNOFILE")) >= 8192


def test_the_unit_the_wrapper_and_the_docs_agree_on_user_directory_command_and_configuration() -> None:
    service = read_unit()["Service"]
    assert one(service, "ExecStart") == f"{wrapper_default('SERVICE_BIN')} run"
    assert one(service, "WorkingDirectory") == wrapper_default("SERVICE_DIR")
    assert one(service, "User") == wrapper_default("SERVICE_USER")
    assert one(service, "Environment") == f"COLLECTOR_CONFIG={wrapper_default('COLLECTOR_CONFIG')}"
    guide = (UNIT_DIR.parents[1] / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert f"deploy/systemd/collector.yaml {wrapper_default('COLLECTOR_CONFIG')}" in guide
    assert "deploy/systemd/collector.service /etc/systemd/system/collector.service" in guide
    assert "deploy/systemd/collector-cli.sh /usr/local/bin/collector" in guide


def test_the_shipped_configuration_is_valid_and_uses_absolute_paths_only() -> None:
    config = load_config(CONFIG, environ={}, env_file=None)
    assert config.sink.path.is_absolute()  # type: ignore[union-attr]
    assert config.backup.dir.is_absolute()
    assert config.api.host == "127.0.0.1"


def test_the_wrapper_runs_the_command_in_the_services_directory_with_its_configuration(
    tmp_path: Path,
) -> None:
    (tmp_path / "collector.yaml").write_text("backup: {dir: spool}\n", encoding="utf-8")
    done = subprocess.run(
        [str(WRAPPER), "check-config"],
        cwd="/",
        env={
            "PATH": "/usr/bin:/bin",
            "SERVICE_USER": getpass.getuser(),
            "SERVICE_DIR": str(tmp_path),
            "SERVICE_BIN": str(Path(sys.executable).parent / "collector"),
            "COLLECTOR_CONFIG": str(tmp_path / "collector.yaml"),
            "PYTHONPATH": str(UNIT_DIR.parents[1]),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "dir: spool" in done.stdout  # the configuration it was given, not the defaults


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = require_program("systemd-analyze", package="systemd")
    # verify checks that ExecStart exists; the package is not installed in /opt on a test machine.
    unit = tmp_path / "collector.service"
    unit.write_text(
        UNIT.read_text(encoding="utf-8").replace(
            wrapper_default("SERVICE_BIN"), str(Path(sys.executable).parent / "collector")
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
