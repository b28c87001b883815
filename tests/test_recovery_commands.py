"""What ``collector backups`` and ``collector replay`` print, from the configuration an operator has."""

from __future__ import annotations

import http.client
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.backup import CsvSpool
from collector.config import Config
from collector.recovery.commands import backups_command, replay_command
from collector.service import CollectorService
from collector.spool_format import SpoolKind, backup_rows, rejected_rows
from tests.recovery_support import sample_values, table_rows, write_backup


def _config(tmp_path: Path) -> Config:
    return Config.model_validate(
        {
            "sink": {"type": "sqlite", "path": str(tmp_path / "data" / "tags.db")},
            "backup": {"dir": str(tmp_path / "backup"), "fallback_dir": str(tmp_path / "fallback")},
            "writer": {"backoff_s": [0.0]},
        }
    )


def test_backups_says_to_wait_while_the_service_still_writes_the_only_file(tmp_path: Path) -> None:
    config = _config(tmp_path)
    spool = CsvSpool(tmp_path / "backup")
    try:
        spool.append(backup_rows(sample_values(12), datetime.now(UTC)))
        out = io.StringIO()
        assert backups_command(config, [], out=out) == 0
        text = out.getvalue()
        assert "(in use: the service is still writing it)" in text
        assert "the outage is still going on" in text and "collector replay" not in text
    finally:
        spool.close()
    out = io.StringIO()
    backups_command(config, [], out=out)
    assert "in use" not in out.getvalue() and "collector replay (try --dry-run first)" in out.getvalue()


def test_backups_and_replay_cover_the_fallback_directory_too(tmp_path: Path) -> None:
    config = _config(tmp_path)
    main_values = sample_values(40)
    fallback_values = sample_values(25, start=datetime(2026, 3, 5, tzinfo=UTC))
    write_backup(tmp_path / "backup", main_values)
    write_backup(tmp_path / "fallback", fallback_values)

    out = io.StringIO()
    backups_command(config, [], as_json=True, out=out)
    totals = json.loads(out.getvalue())["totals"]["backup"]
    assert (totals["files"], totals["rows"]) == (2, 65)
    assert totals["last"] == fallback_values[-1].timestamp.isoformat()

    out = io.StringIO()
    assert replay_command(config, [], as_json=True, out=out) == 0
    report = json.loads(out.getvalue())
    assert report["totals"]["written"] == 65 and len(table_rows(tmp_path / "data" / "tags.db")) == 65
    assert [Path(f["moved_to"]).parent.name for f in report["files"]] == ["replayed", "replayed"]


def test_nothing_waiting_is_said_plainly(tmp_path: Path) -> None:
    config = _config(tmp_path)
    out = io.StringIO()
    assert backups_command(config, [], out=out) == 0
    assert out.getvalue().startswith("no backup or rejected files in ")
    out = io.StringIO()
    assert replay_command(config, [], out=out) == 0
    assert out.getvalue() == "nothing to replay: no backup files waiting.\n"
    assert not (tmp_path / "data").exists()  # nothing to do never touches the database


def test_a_path_that_is_not_there_is_a_usage_error_and_nothing_is_done(tmp_path: Path) -> None:
    config = _config(tmp_path)
    write_backup(tmp_path / "backup", sample_values(5))
    err = io.StringIO()
    code = replay_command(config, [tmp_path / "backup", tmp_path / "typo"], out=io.StringIO(), err=err)
    assert code == 2 and "typo: no such file or directory" in err.getvalue()
    assert list((tmp_path / "backup").glob("backup_*.csv")) and not (tmp_path / "data").exists()


def test_the_status_api_reports_the_same_totals_as_collector_backups(tmp_path: Path) -> None:
    early = sample_values(120, start=datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    late = sample_values(45, start=datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    write_backup(tmp_path / "backup", early)
    write_backup(tmp_path / "backup", late)
    rejected = CsvSpool(tmp_path / "backup", kind=SpoolKind.REJECTED)
    rejected.append(rejected_rows([(v, "2290", "check") for v in late[:3]], datetime.now(UTC)))
    rejected.close()
    config = Config.model_validate(
        {
            "source": {"type": "external"},
            "sink": {"type": "sqlite", "path": str(tmp_path / "data" / "tags.db")},
            "backup": {"dir": str(tmp_path / "backup")},
            "api": {"port": 0},
        }
    )
    service = CollectorService(config)
    service.start()
    try:
        assert service.api is not None and service.api.port is not None
        deadline = time.monotonic() + 10
        while True:  # the monitor thread reads the files within a second of start
            backups = _status(service.api.port)["backups"]
            if backups["rows"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        service.stop()
    out = io.StringIO()
    backups_command(config, [], as_json=True, out=out)
    totals = json.loads(out.getvalue())["totals"]
    assert (backups["rows"], backups["rejected_rows"]) == (165, 3)
    assert (totals["backup"]["rows"], totals["rejected"]["rows"]) == (165, 3)
    assert backups["rows_from"] == totals["backup"]["first"] == early[0].timestamp.isoformat()
    assert backups["rows_to"] == totals["backup"]["last"] == late[-1].timestamp.isoformat()


def _status(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/api/v1/status")
        response = conn.getresponse()
        assert response.status == 200
        document: dict[str, Any] = json.loads(response.read())
        return document
    finally:
        conn.close()
