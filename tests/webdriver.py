"""A minimal W3C WebDriver client for Debian's chromedriver and headless Chromium.

The protocol is JSON over HTTP; the few commands a page test needs (open a URL, run a script,
take a screenshot) fit in this module, with no client library and nothing fetched at run time.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.ci import require_program
from tests.telemetry_support import free_port


class WebDriverError(RuntimeError):
    """The driver answered a command with an error."""


class Browser:
    """One headless Chromium session."""

    def __init__(self, driver_url: str, session: str) -> None:
        self._base = f"{driver_url}/session/{session}"

    def _command(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self._base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as exc:
            raise WebDriverError(json.load(exc)["value"].get("message", str(exc))) from None

    def open(self, url: str) -> None:
        self._command("POST", "/url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body; ``arguments`` holds ``args``) in the page."""
        return self._command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script: str, timeout_s: float = 10.0, *args: Any) -> Any:
        """Run ``script`` until it returns something truthy; that value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.run(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for: {script}")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self._command("GET", "/screenshot")))
        return path

    def console_errors(self) -> list[str]:
        """Severe messages from the page's console (script errors, blocked resources)."""
        try:
            entries = self._command("POST", "/se/log", {"type": "browser"})
        except WebDriverError:
            return []
        return [e["message"] for e in entries if e.get("level") == "SEVERE"]


@contextmanager
def headless_chromium(width: int = 390, height: int = 844) -> Iterator[Browser]:
    """A headless Chromium through chromedriver, at a phone's viewport by default; skipped where
    they are not installed (failed under CI)."""
    driver = require_program("chromedriver", package="chromium-driver")
    chromium = shutil.which("chromium") or require_program("chromium", package="chromium")
    port = free_port()
    process = subprocess.Popen(
        [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    session = None
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/status", timeout=2) as response:
                    if json.load(response)["value"].get("ready"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("chromedriver did not start")
            time.sleep(0.1)
        capabilities = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            f"--window-size={width},{height}",
                        ],
                    },
                    "goog:loggingPrefs": {"browser": "ALL"},
                }
            }
        }
        request = urllib.request.Request(
            f"{url}/session",
            data=json.dumps(capabilities).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            session = json.load(response)["value"]["sessionId"]
        yield Browser(url, session)
    finally:
        if session is not None:
            with suppress(OSError):
                urllib.request.urlopen(
                    urllib.request.Request(f"{url}/session/{session}", method="DELETE"), timeout=30
                ).close()
        process.terminate()
        process.wait(10)
