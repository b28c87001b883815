"""What a test does when a service or program it needs is missing: skip here, fail under CI.

On a workstation without PostgreSQL or Prometheus the tests that need them skip, saying what is
missing. Under CI the same absence is a broken runner, and a skipped test would hide it, so the
test fails instead. Every test that needs something from outside the project asks this module, so
the two cases are told apart in one place and the same way for every service.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import NoReturn

import pytest

NOT_CI = frozenset({"", "0", "false"})
"""Values of ``CI`` (stripped, any case) that mean "not under CI"; anything else means CI."""


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``CI`` is set to anything but empty, ``0`` or ``false`` (CI services set ``true``)."""
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() not in NOT_CI


def missing(reason: str, environ: Mapping[str, str] | None = None) -> NoReturn:
    """Skip the calling test because ``reason``; under CI, fail it instead."""
    if in_ci(environ):
        value = (os.environ if environ is None else environ).get("CI", "")
        pytest.fail(f"{reason} (required under CI={value})", pytrace=False)
    pytest.skip(reason)


def require_program(name: str, package: str, environ: Mapping[str, str] | None = None) -> str:
    """The path of program ``name`` on PATH; skips (fails under CI) when it is not installed."""
    found = shutil.which(name)
    if found is None:
        missing(f"{name} is not installed (Debian package {package!r})", environ)
    return found
