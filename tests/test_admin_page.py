"""The admin page in a real browser: headless Chromium (Debian's package) through chromedriver.

A running service with a real SQLite database; the page, opened at a phone's width, must show the
same numbers as ``/api/v1/status``, run under its strict Content-Security-Policy (its script and
style apply, nothing external is loaded), and show a database outage (another process holding the
write lock) within one refresh. Screenshots of both states are saved and their paths printed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.config import load_config
from collector.model import PollingData
from collector.service import CollectorService
from tests.webdriver import Browser, headless_chromium

REFRESH_S = 1.0

pytestmark = pytest.mark.slow

STABLE_FIELDS = (
    "service.version",
    "service.state",
    "service.sink",
    "service.table",
    "buffer.size",
    "buffer.capacity",
    "buffer.utilization",
    "buffer.overflow",
    "buffer.spilled",
    "buffer.spill_ratio",
    "buffer.status",
    "circuit.state",
    "circuit.reason",
    "circuit.trips",
    "writer.successful_writes",
    "writer.failed_writes",
    "writer.success_rate",
    "writer.sink_up",
    "writer.last_error",
    "writer.rolling.success_rate",
    "writer.rolling.average_batch_size",
    "values.accepted",
    "values.written",
    "values.backed_up",
    "values.lost",
    "values.balanced",
    "values.recovered",
    "wal.durability",
    "wal.writable",
    "wal.full",
    "wal.segments",
    "wal.recovered_values",
    "wal.quarantined_values",
    "wal.unlogged_values",
    "wal.directory",
    "source.type",
    "backups.files",
    "backups.rows",
    "backups.rows_from",
    "backups.rows_to",
    "backups.fallback_active",
)
"""Fields that do not change while the service is idle, so the page and a later API call agree."""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[CollectorService]:
    config = load_config(
        None,
        environ={
            "COLLECTOR_SOURCE__TYPE": "external",
            "COLLECTOR_SINK__TYPE": "sqlite",
            "COLLECTOR_SINK__PATH": str(tmp_path / "tags.db"),
            "COLLECTOR_SINK__BUSY_TIMEOUT_S": "0.2",
            "COLLECTOR_WRITER__MAX_RETRIES": "0",
            "COLLECTOR_WRITER__FLUSH_INTERVAL_S": "0.1",
            "COLLECTOR_WRITER__PROBE_INTERVAL_S": "30",
            "COLLECTOR_BACKUP__DIR": str(tmp_path / "backup"),
            "COLLECTOR_API__PORT": "0",
        },
        env_file=None,
    )
    running = CollectorService(config)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/api/v1/status", timeout=10) as response:
        document: dict[str, Any] = json.load(response)
        return document


def _field(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for key in path.split("."):
        value = value[key]
    return value


def _shown(browser: Browser) -> dict[str, dict[str, str]]:
    """Every field on the page: the raw value it was given and the text it shows."""
    shown: dict[str, dict[str, str]] = browser.run(
        "const out = {};"
        "document.querySelectorAll('[data-field]').forEach(el => {"
        "  out[el.dataset.field] = {value: el.dataset.value, text: el.textContent}; });"
        "return out;"
    )
    return shown


def _as_page_value(value: Any) -> str:
    """A JSON value as the page stores it in ``data-value`` (JavaScript's String())."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _wait_written(service: CollectorService, count: int) -> None:
    deadline = time.monotonic() + 20
    while service.snapshot().writer.written + service.snapshot().writer.backed_up < count:
        assert time.monotonic() < deadline, "values not settled"
        time.sleep(0.05)


def _output_dir(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("COLLECTOR_TEST_OUTPUT", tmp_path))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_the_admin_page_shows_the_api_numbers_and_an_outage_within_one_refresh(
    service: CollectorService, tmp_path: Path
) -> None:
    assert service.api is not None and service.api.url is not None
    url = service.api.url
    now = datetime.now(UTC)
    service.data_queue.put(PollingData("line1", now, {f"T{i:03d}": float(i) for i in range(300)}))
    _wait_written(service, 300)
    output = _output_dir(tmp_path)

    with headless_chromium(width=390, height=844) as browser:
        browser.open(f"{url}/?refresh={REFRESH_S:g}")
        browser.wait_for("return window.collectorStatus && window.collectorStatus.values.written === 300")
        shown = _shown(browser)
        api = _status(url)
        for path in STABLE_FIELDS:
            assert shown[path]["value"] == _as_page_value(_field(api, path)), path
        # What a person reads, formatted.
        assert shown["values.written"]["text"] == "300"
        assert shown["buffer.capacity"]["text"] == "10,000"
        assert shown["circuit.state"]["text"] == "closed: writing"
        assert shown["writer.sink_up"]["text"] == "yes"
        assert shown["wal.durability"]["text"] == "interval"
        assert shown["wal.writable"]["text"] == "yes"
        assert shown["wal.directory"]["text"] == str(Path(service.config.sink.path).parent / "wal")  # type: ignore[union-attr]
        assert browser.run("return document.querySelector('[data-input=\"http\"]').textContent").startswith(
            "listening, 0 values"
        )
        assert browser.run("return document.getElementById('alert-list').textContent.trim()") == "none"
        # Its own script and style run under the page's policy; it fits a phone's width.
        assert browser.run("return getComputedStyle(document.body).marginTop") == "0px"
        assert browser.run("return document.documentElement.scrollWidth <= window.innerWidth")
        assert browser.run(
            "return performance.getEntriesByType('resource').every(r => r.name.startsWith(location.origin))"
        ), "the page loaded something from another origin"
        print(f"screenshot (healthy): {browser.screenshot(output / 'admin-page-healthy.png')}")

        # The outage: another process holds SQLite's write lock; the next batch fails and, with
        # no retries configured, the circuit opens at once.
        lock = sqlite3.connect(service.config.sink.path, isolation_level=None)  # type: ignore[union-attr]
        try:
            lock.execute("BEGIN IMMEDIATE")
            service.data_queue.put(PollingData("line1", datetime.now(UTC), {"T000": 1.5, "T001": 2.5}))
            deadline = time.monotonic() + 20
            while _status(url)["circuit"]["state"] != "open":
                assert time.monotonic() < deadline, "the circuit did not open"
                time.sleep(0.02)
            opened = time.monotonic()
            browser.wait_for(
                "return document.querySelector('[data-field=\"circuit.state\"]').dataset.value === 'open'",
                REFRESH_S + 2.0,
            )
            seen_after = time.monotonic() - opened
            assert seen_after <= REFRESH_S + 1.0, f"the page showed the outage {seen_after:.1f} s late"
            alerts = browser.run(
                "return [...document.querySelectorAll('#alert-list li')].map(li => li.dataset.alert)"
            )
            assert "CollectorDatabaseDown" in alerts
            shown = _shown(browser)
            assert shown["writer.sink_up"]["text"] == "no"
            assert "locked" in shown["circuit.reason"]["text"]
            link = browser.run("return document.querySelector('#alert-list li a').href")
            assert link.startswith(f"{url}/runbook#collector")
            print(f"screenshot (outage): {browser.screenshot(output / 'admin-page-outage.png')}")
        finally:
            lock.execute("ROLLBACK")
            lock.close()


def test_the_page_says_so_when_the_collector_stops_answering(service: CollectorService) -> None:
    assert service.api is not None and service.api.url is not None
    url = service.api.url
    with headless_chromium() as browser:
        browser.open(f"{url}/?refresh={REFRESH_S:g}")
        browser.wait_for("return window.collectorStatus")
        service.api.stop()
        banner = browser.wait_for(
            "const b = document.getElementById('banner');"
            "return b.classList.contains('show') && b.textContent",
            REFRESH_S + 5.0,
        )
        assert "does not answer" in banner
