"""The commands the runbook, the operations guide and the deployment guide give an operator work as
written, on a service laid out as the systemd unit lays it out.

Every command in a ``sh`` block of those pages is either run here or skipped with a reason (a test
fails when a page gains a command that is neither). The run plays the operator's night: the
shipped ``deploy/systemd/collector.yaml`` with its paths moved into a scratch directory, the real
``collector run`` as the unit starts it, an outage (another process holds SQLite's write lock), the
first-look commands while the service runs, then the recovery commands through the shipped
``collector`` wrapper, and finally the count: every value the simulator generated is in the
database once. It runs once with text logs and once with JSON logs, since the log commands must
find the same events in both.

What stands in for the host: the journal is the service's stderr (what journald receives under
the unit), ``/var/lib/collector`` is the scratch directory, and the test's own user is the
service's user (so ``sudo -u collector`` is dropped).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ci import require_program
from tests.evidence import read_ledger, sqlite_keys
from tests.telemetry_support import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("docs/runbook.md", "docs/operations.md", "docs/deployment.md")
UNIT_DIR = ROOT / "deploy" / "systemd"
SERVICE_HOME = "/var/lib/collector"
EVENTS = ("circuit_opened", "write_failed", "backup_file_created", "circuit_closed")

# Commands that cannot run on a test machine, by how they start, with the reason.
NOT_HERE = {
    "systemctl ": "needs systemd as the init system",
    "useradd ": "changes the host's users",
    "userdel ": "changes the host's users",
    "install ": "installs into the host's system directories",
    "python3 -m venv /opt/collector": "installs into the host's system directories",
    "/opt/collector/bin/pip ": "installs into the host's system directories",
    "rm /etc/systemd": "removes installed files from the host",
    "editor ": "interactive",
    "docker ": "needs a Docker daemon",
    "collector run": "the test starts the service itself, as the unit does",
    'python3 -c "import sqlite3, time;': "holds the lock for 30 s; the test holds it briefly the same way",
}
# What the scenario below runs, by how the command starts.
RUNNERS = ("curl ", "journalctl ", "collector ", "sudo -u collector sqlite3 ")


@dataclass(frozen=True)
class Command:
    page: str
    text: str

    def skip_reason(self) -> str | None:
        for start, reason in NOT_HERE.items():
            if self.text.startswith(start):
                return reason
        return None


def shell_commands(page: str) -> list[Command]:
    """The commands in the page's ``sh`` blocks: one per line, joining lines ended by a backslash
    and lines inside an open quotation."""
    markdown = (ROOT / page).read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"^\s*```sh\n(.*?)^\s*```", markdown, flags=re.MULTILINE | re.DOTALL):
        pending = ""
        for raw in block.splitlines():
            line = raw.strip()
            if not line and not pending:
                continue
            pending = f"{pending}\n{line}" if pending else line
            if pending.endswith("\\") or not _complete(pending):
                continue
            if not pending.startswith("#"):
                commands.append(Command(page, pending))
            pending = ""
        assert not pending, f"{page}: unfinished command {pending!r}"
    return commands


def _complete(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quotation: the command goes on on the next line
        return False
    return True


ALL_COMMANDS = [command for page in DOCS for command in shell_commands(page)]


def test_every_documented_command_is_run_here_or_skipped_for_a_reason() -> None:
    runnable = [c for c in ALL_COMMANDS if c.skip_reason() is None]
    unknown = [c for c in runnable if not any(c.text.startswith(p) for p in RUNNERS)]
    assert unknown == [], "commands in the docs this test neither runs nor skips"
    # The pages the operator follows at night have commands to run, not only to skip.
    assert {c.page for c in runnable} == set(DOCS)


# ---------------------------------------------------------------------------------- the scenario


@dataclass
class Host:
    """The scratch host: the service's directory, its configuration, its log and its API port."""

    home: Path
    config: Path
    log: Path
    port: int
    bin_dir: Path
    log_format: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTOR_", "ORACLE_"))}
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["COLLECTOR_CONFIG"] = str(self.config)
        env["PYTHONPATH"] = str(ROOT)  # this checkout's collector, whatever the environment installed
        # The wrapper installed as /usr/local/bin/collector, pointed at this host.
        env["SERVICE_USER"] = getpass.getuser()
        env["SERVICE_DIR"] = str(self.home)
        env["SERVICE_BIN"] = str(Path(sys.executable).parent / "collector")
        return env

    def as_here(self, command: str) -> str:
        """The documented command with this host's paths, port and journal."""
        text = re.sub(r"journalctl -u collector [^|]*\|", f"cat {shlex.quote(str(self.log))} |", command)
        text = text.replace("127.0.0.1:9108", f"127.0.0.1:{self.port}")
        text = text.replace("sudo -u collector ", "")
        return text.replace(SERVICE_HOME, str(self.home))

    def run(self, command: Command) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "-c", "set -o pipefail\n" + self.as_here(command.text)],
            check=False,
            cwd=self.home.parent,  # not the service's directory: the commands must not depend on it
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (
            f"{command.page}: `{command.text}` exited {done.returncode}\n{done.stderr}"
        )
        return done

    def events(self) -> list[str]:
        return re.findall(r'event"?[=:] ?"?(\w+)', self.log.read_text(encoding="utf-8"))


def scratch_config(home: Path, port: int, log_format: str) -> dict[str, Any]:
    """deploy/systemd/collector.yaml moved into ``home``, with timings short enough for a test."""
    text = (UNIT_DIR / "collector.yaml").read_text(encoding="utf-8").replace(SERVICE_HOME, str(home))
    config: dict[str, Any] = yaml.safe_load(text)
    config["source"].update(groups=2, tags_per_group=25, interval_s=0.1, ledger=str(home / "ledger.csv"))
    config["sink"]["busy_timeout_s"] = 0.2
    config["writer"] = {"backoff_s": [0.1, 0.2, 0.4], "probe_interval_s": 0.5, "flush_interval_s": 0.1}
    config["backup"]["idle_close_s"] = 0.5
    config["api"]["port"] = port
    config["logging"]["format"] = log_format
    return config


@pytest.fixture(params=["text", "json"])
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Host]:
    for program in ("curl", "jq", "sqlite3"):
        require_program(program, package=program)
    home = tmp_path / "var-lib-collector"
    home.mkdir(mode=0o700)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "collector").symlink_to(UNIT_DIR / "collector-cli.sh")
    port = free_port()
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump(scratch_config(home, port, request.param)), encoding="utf-8")
    yield Host(home, config, tmp_path / "journal.log", port, bin_dir, request.param)


def by_prefix(prefix: str) -> list[Command]:
    found = [c for c in ALL_COMMANDS if c.text.startswith(prefix) and c.skip_reason() is None]
    assert found, f"the docs no longer have a `{prefix}` command"
    return found


@pytest.mark.slow
def test_the_documented_commands_work_as_written_through_an_outage(host: Host) -> None:
    for command in by_prefix("collector check-config"):
        host.run(command)

    # The service as the unit runs it: ExecStart in WorkingDirectory, stderr to the journal.
    with host.log.open("w", encoding="utf-8") as journal:
        service = subprocess.Popen(
            [host.env()["SERVICE_BIN"], "run"], cwd=host.home, env=host.env(), stderr=journal
        )
    try:
        database = host.home / "data" / "tags.db"
        wait_until(lambda: "service_started" in host.events(), 30, what="the startup line", process=service)
        wait_until(lambda: _rows(database) > 0, 30, what="rows in the database", process=service)
        with _write_lock(database):  # an outage: another process holds SQLite's write lock
            wait_until(lambda: "circuit_opened" in host.events(), 30, what="the circuit to open")
        wait_until(lambda: "circuit_closed" in host.events(), 30, what="the circuit to close")

        # First look, while the service runs. The startup line and the status say where the data goes.
        (status,) = [c for c in by_prefix("curl ") if "/api/v1/status" in c.text]
        shown = json.loads(host.run(status).stdout)["service"]
        startup = next(line for line in host.log.read_text().splitlines() if "service_started" in line)
        for path in (database, host.home / "backup"):
            assert str(path) in startup and str(path) in (shown["database"], shown["backup_dir"])
        (ready,) = [c for c in by_prefix("curl ") if "/readyz" in c.text]
        host.run(ready)
        for command in by_prefix("journalctl "):
            found = host.run(command).stdout
            if "jq " in command.text and host.log_format == "text":
                assert found == "", "jq found JSON in text logs"
                continue
            for event in EVENTS:
                assert event in found, f"`{command.text}` does not show {event} in {host.log_format} logs"
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0, host.log.read_text(encoding="utf-8")[-3000:]

    # Recovery through the wrapper, from outside the service's directory, as the pages give it.
    backups = host.home / "backup"
    assert list(backups.glob("backup_*.csv")), "the outage left no backup file"
    listing = by_prefix("collector backups")
    assert "backup_" in host.run(listing[0]).stdout
    for command in by_prefix("collector replay"):
        host.run(command)
    for command in listing:
        shown = host.run(command).stdout
        assert "0 backup file(s)" in shown or "no backup" in shown, shown
    assert not list(backups.glob("backup_*.csv"))
    for command in by_prefix("collector replay"):  # safe to repeat: nothing waits, exit 0
        host.run(command)
    for command in by_prefix("sudo -u collector sqlite3 "):
        host.run(command)

    # The gap is closed: every generated value is in the database exactly once.
    ledger = read_ledger(host.home / "ledger.csv")
    stored = sqlite_keys(host.home / "data" / "tags.db")
    assert set(stored) == set(ledger) and stored.total() == len(ledger)


def _rows(database: Path) -> int:
    try:
        with sqlite3.connect(database, timeout=0.1) as conn:
            return int(conn.execute("SELECT count(*) FROM TAG_DATA").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


class _write_lock:
    """Holds SQLite's write lock, as a long maintenance transaction would."""

    def __init__(self, database: Path) -> None:
        self.conn = sqlite3.connect(database, isolation_level=None, timeout=10)

    def __enter__(self) -> None:
        self.conn.execute("BEGIN EXCLUSIVE")

    def __exit__(self, *_exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()
