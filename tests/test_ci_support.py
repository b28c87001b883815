"""The test-support rules themselves: when a missing service skips or fails, and how waiting ends."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ci import in_ci, missing, require_program
from tests.waiting import wait_until

TESTS = Path(__file__).resolve().parent
ABSENT_PROGRAM = "collector-test-no-such-program"


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE", "True", " true ", "github-actions"])
def test_any_other_value_of_ci_means_ci(value: str) -> None:
    assert in_ci({"CI": value})


@pytest.mark.parametrize("value", ["", "0", "false", "FALSE", "False", " 0 ", "  "])
def test_unset_empty_zero_or_false_means_not_ci(value: str) -> None:
    assert not in_ci({"CI": value})
    assert not in_ci({})


def test_the_process_environment_is_read_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    assert in_ci()
    monkeypatch.setenv("CI", "false")
    assert not in_ci()
    monkeypatch.delenv("CI")
    assert not in_ci()


def test_something_missing_skips_outside_ci_with_the_reason() -> None:
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not answering"):
        missing("PostgreSQL is not answering", {"CI": "0"})


@pytest.mark.parametrize("value", ["true", "1"])
def test_something_missing_fails_under_ci_with_the_reason(value: str) -> None:
    with pytest.raises(pytest.fail.Exception, match=f"PostgreSQL is not answering.*CI={value}"):
        missing("PostgreSQL is not answering", {"CI": value})


def test_a_missing_program_names_its_package_and_skips_or_fails_like_a_service() -> None:
    with pytest.raises(pytest.skip.Exception, match=f"{ABSENT_PROGRAM} is not installed.*'prometheus'"):
        require_program(ABSENT_PROGRAM, package="prometheus", environ={})
    with pytest.raises(pytest.fail.Exception, match=f"{ABSENT_PROGRAM} is not installed.*'prometheus'"):
        require_program(ABSENT_PROGRAM, package="prometheus", environ={"CI": "1"})


def test_an_installed_program_is_found_on_the_path() -> None:
    found = require_program(Path(sys.executable).name, package="python3", environ={"CI": "true"})
    assert Path(found).is_file()


def test_no_test_module_reads_the_ci_variable_itself() -> None:
    readers = [
        path.name
        for path in TESTS.glob("*.py")
        if path.name not in {"ci.py", Path(__file__).name}
        and re.search(r"""environ(\.get)?\s*[\[(]\s*["']CI["']""", path.read_text(encoding="utf-8"))
    ]
    assert readers == [], "ask tests.ci instead, so that CI means the same everywhere"


def test_waiting_returns_once_the_condition_holds() -> None:
    calls = iter([False, False, True])
    waited = wait_until(lambda: next(calls), timeout_s=5, interval_s=0)
    assert waited >= 0


def test_waiting_for_what_never_comes_fails_naming_it() -> None:
    with pytest.raises(AssertionError, match="waiting for rows in the table"):
        wait_until(lambda: False, timeout_s=0, what="rows in the table", interval_s=0)


def test_waiting_on_a_process_that_has_exited_fails_at_once_with_its_exit_code() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    with pytest.raises(AssertionError, match=r"exited \(3\) while waiting for the ledger"):
        wait_until(lambda: False, timeout_s=60, what="the ledger", process=process)


def test_a_condition_met_as_the_process_exits_still_counts() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    answers = iter([False, True])
    wait_until(lambda: next(answers), timeout_s=60, interval_s=0, process=process)
