"""Waiting in tests for something another thread or process does: one polling loop for all.

Unit tests move an injected clock instead; this is for the tests that watch real threads, files,
databases or a ``collector run`` process, where the only way to know is to look again.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

DEFAULT_TIMEOUT_S = 20.0
"""Generous: the machine running the tests may be busy, and a pass costs no more for it."""
DEFAULT_INTERVAL_S = 0.01


def wait_until(
    condition: Callable[[], object],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    what: str = "the condition",
    interval_s: float = DEFAULT_INTERVAL_S,
    process: subprocess.Popen[str] | subprocess.Popen[bytes] | None = None,
) -> float:
    """Poll ``condition`` until it is true and return the seconds that took.

    Raises AssertionError naming ``what`` once ``timeout_s`` has passed, or at once when the
    ``process`` being watched has exited, since then the condition can no longer come true.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            if condition():  # a last look: it may have come true just before the exit
                break
            raise AssertionError(f"the process exited ({process.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - start
