"""The open-file limit: raised to the hard limit when the service starts, in a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import resource
from collector.limits import open_file_limit, raise_open_file_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
before, after = raise_open_file_limit()
print(soft, hard, before, after, open_file_limit())
"""


def _run(shell_limits: str) -> list[int]:
    result = subprocess.run(
        ["bash", "-c", f'{shell_limits} && exec "$0" -c "$1"', sys.executable, SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [int(x) for x in result.stdout.split()]


def test_a_low_soft_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard, before, after, now = _run("ulimit -S -n 64 && ulimit -H -n 512")
    assert (soft, hard) == (64, 512)
    assert (before, after, now) == (64, 512, 512)


def test_a_low_hard_limit_is_kept_as_it_is() -> None:
    soft, hard, before, after, now = _run("ulimit -n 64")
    assert (soft, hard, before, after, now) == (64, 64, 64, 64, 64)
