"""The Oracle image's init script, run for real with bash against a stand-in for SQL*Plus.

The image executes an init script that has the exec bit and sources one that has not; either way
it must find its DDL, leave the marker the compose health check waits for only once TAG_DATA
exists, and otherwise fail loudly with no marker.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "docker" / "oracle" / "initdb" / "01_create_tag_table.sh"
DDL = SCRIPT.with_name("tag_data.ddl")

# SQL*Plus as far as the script needs it: reads the session from stdin, records it, and answers
# the count the way the database would after the DDL (FAKE_TABLES), with FAKE_EXIT as its status.
FAKE_SQLPLUS = """#!/bin/bash
cat > "$FAKE_LOG"
[ -n "${FAKE_SAY:-}" ] && echo "$FAKE_SAY"
echo "TAG_DATA_TABLES=${FAKE_TABLES:-1}"
exit "${FAKE_EXIT:-0}"
"""

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sqlplus = bin_dir / "sqlplus"
    sqlplus.write_text(FAKE_SQLPLUS)
    sqlplus.chmod(sqlplus.stat().st_mode | stat.S_IXUSR)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "APP_USER": "app",
        "TAG_DATA_MARKER": str(tmp_path / "tag_data.ready"),
        "FAKE_LOG": str(tmp_path / "sqlplus.in"),
    }


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    assert BASH is not None
    return subprocess.run(
        [BASH, *command], env=env, cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )


def parent_that_sources(tmp_path: Path, *, errexit: bool) -> Path:
    """An entrypoint elsewhere that sources the script (so $0 is the entrypoint, not the script)."""
    parent = tmp_path / "entrypoint" / "run.sh"
    parent.parent.mkdir()
    strict = "set -e\n" if errexit else ""
    parent.write_text(f'#!/bin/bash\n{strict}. "{SCRIPT}"\necho "entrypoint carried on: $?"\n')
    return parent


def test_the_script_keeps_its_exec_bit_in_the_repository() -> None:
    assert SCRIPT.stat().st_mode & stat.S_IXUSR


def test_executed_it_runs_the_ddl_beside_it_and_leaves_the_marker(
    tmp_path: Path, env: dict[str, str]
) -> None:
    result = run([str(SCRIPT)], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Path(env["TAG_DATA_MARKER"]).exists()
    session = Path(env["FAKE_LOG"]).read_text()
    assert f"@{DDL}" in session  # found through its own location, whatever the working directory
    assert "ALTER SESSION SET CURRENT_SCHEMA = app;" in session
    assert "WHENEVER SQLERROR EXIT" in session and "WHENEVER OSERROR EXIT" in session
    assert "table_name = 'TAG_DATA'" in session


def test_sourced_from_an_entrypoint_elsewhere_it_finds_its_ddl_too(
    tmp_path: Path, env: dict[str, str]
) -> None:
    result = run([str(parent_that_sources(tmp_path, errexit=True))], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "entrypoint carried on: 0" in result.stdout
    assert f"@{DDL}" in Path(env["FAKE_LOG"]).read_text()
    assert Path(env["TAG_DATA_MARKER"]).exists()


def test_no_table_no_marker_and_a_loud_failure(tmp_path: Path, env: dict[str, str]) -> None:
    marker = Path(env["TAG_DATA_MARKER"])
    marker.touch()  # left over from an earlier run: it must not survive a failed one
    env["FAKE_TABLES"] = "0"
    result = run([str(SCRIPT)], env, cwd=tmp_path)
    assert result.returncode != 0
    assert "TAG_DATA is not in schema app" in result.stderr
    assert not marker.exists()


def test_a_failing_sqlplus_leaves_no_marker_and_stops_a_strict_entrypoint(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env["FAKE_EXIT"] = "3"
    env["FAKE_SAY"] = "ORA-01950: no privileges on tablespace 'USERS'"
    result = run([str(parent_that_sources(tmp_path, errexit=True))], env, cwd=tmp_path)
    assert result.returncode != 0
    assert "entrypoint carried on" not in result.stdout
    assert "SQL*Plus failed creating TAG_DATA" in result.stderr and "ORA-01950" in result.stderr
    assert not Path(env["TAG_DATA_MARKER"]).exists()


def test_sourced_by_a_lenient_entrypoint_the_failure_is_its_status(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env["FAKE_TABLES"] = "0"
    result = run([str(parent_that_sources(tmp_path, errexit=False))], env, cwd=tmp_path)
    assert "entrypoint carried on: 1" in result.stdout  # `set -e` and `exit` did not leak into it
    assert not Path(env["TAG_DATA_MARKER"]).exists()


def test_without_app_user_it_says_so_and_does_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    del env["APP_USER"]
    result = run([str(SCRIPT)], env, cwd=tmp_path)
    assert result.returncode != 0
    assert "APP_USER is not set" in result.stderr
    assert not Path(env["FAKE_LOG"]).exists()  # SQL*Plus never ran
    assert not Path(env["TAG_DATA_MARKER"]).exists()
