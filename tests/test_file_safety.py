"""Files: owner-only modes, and replay, ``collector backups`` and the resume files never following a
link planted in a backup directory, nor echoing what a file holds."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest

from collector.backup import CsvSpool
from collector.config import load_config
from collector.file_safety import FileModes, UnsafeFile, open_regular, private_file
from collector.recovery.commands import backups_command, show_command
from collector.recovery.files import backup_files, resume_path
from collector.recovery.replay import Outcome, Replayer
from collector.retry import RetryPolicy
from collector.sinks.base import Sink, TransientSinkError, WriteResult
from collector.sinks.sqlite import SqliteSink
from collector.spool_format import SpoolKind, spreadsheet_safe
from tests.recovery_support import sample_values, table_rows, write_backup

SECRET = "root-only secret line\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file only its owner may read, that a link in the backup directory points at."""
    path = tmp_path / "elsewhere" / "secret.txt"
    path.parent.mkdir()
    path.write_text(SECRET, encoding="utf-8")
    path.chmod(0o600)
    return path


def _replayer(db: Path, **options: object) -> Replayer:
    return Replayer(lambda: SqliteSink(db), sleep=lambda _s: None, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- links and odd files


def test_collector_backups_never_follows_a_link_nor_prints_what_it_points_at(
    tmp_path: Path, secret: Path
) -> None:
    backup = tmp_path / "backup"
    write_backup(backup, sample_values(10))
    (backup / "backup_20260101_000000.csv").symlink_to(secret)
    (backup / "rejected_20260101_000000.csv").symlink_to(secret)
    os.mkfifo(backup / "backup_20260101_000001.csv")  # would hang a reader that opened it
    config = load_config(None, environ={}, env_file=None)
    for as_json in (False, True):
        out = io.StringIO()
        assert backups_command(config, [backup], as_json=as_json, out=out) == 0
        text = out.getvalue()
        assert "secret" not in text
        assert "20260101" not in text, "a link or a pipe is not a waiting file"
    listed = json.loads(_json_listing(config, backup))["files"]
    assert [entry["rows"] for entry in listed] == [10]


def _json_listing(config: object, backup: Path) -> str:
    out = io.StringIO()
    backups_command(config, [backup], as_json=True, out=out)  # type: ignore[arg-type]
    return out.getvalue()


def test_a_file_that_is_not_a_backup_is_named_but_its_contents_are_not_shown(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    stray = backup / "backup_20260101_000000.csv"
    stray.write_text(SECRET, encoding="utf-8")
    report = _replayer(tmp_path / "tags.db").run([stray])
    assert report.files[0].outcome is Outcome.NOT_BACKUP
    assert "secret" not in report.files[0].detail
    out = io.StringIO()
    backups_command(load_config(None, environ={}, env_file=None), [backup], out=out)
    assert "not a backup file" in out.getvalue() and "secret" not in out.getvalue()


def test_replay_refuses_a_link_named_on_the_command_line_and_skips_links_in_a_directory(
    tmp_path: Path, secret: Path
) -> None:
    backup = tmp_path / "backup"
    real = write_backup(backup, sample_values(10))
    link = backup / "backup_20260101_000000.csv"
    link.symlink_to(real)
    assert backup_files([backup]) == [real]
    report = _replayer(tmp_path / "tags.db").run([link])
    assert report.files[0].outcome is Outcome.UNREADABLE
    assert "symbolic link" in report.files[0].detail
    assert real.exists() and link.is_symlink() and not (backup / "replayed").exists()


def test_a_planted_temporary_resume_file_is_replaced_not_written_through(
    tmp_path: Path, secret: Path
) -> None:
    backup = tmp_path / "backup"
    path = write_backup(backup, sample_values(300))
    temporary = resume_path(path).with_name(resume_path(path).name + ".tmp")
    temporary.symlink_to(secret)

    class FailsThird:
        def __init__(self) -> None:
            self.inner, self.writes = SqliteSink(tmp_path / "tags.db"), 0
            self.system_name, self.table = "sqlite", "TAG_DATA"

        def write(self, batch: object) -> WriteResult:
            self.writes += 1
            if self.writes >= 3:
                raise TransientSinkError("database is locked", code="SQLITE_BUSY")
            return self.inner.write(batch)  # type: ignore[arg-type]

        def ping(self) -> None:
            self.inner.ping()

        def close(self) -> None:
            self.inner.close()

    sink: Sink = FailsThird()  # type: ignore[assignment]
    replayer = Replayer(lambda: sink, batch_size=100, retry=RetryPolicy.of(0, []), sleep=lambda _s: None)
    assert replayer.run([path]).files[0].outcome is Outcome.DATABASE
    assert secret.read_text(encoding="utf-8") == SECRET, "the link's target was written"
    assert not temporary.exists() and not temporary.is_symlink()
    saved = resume_path(path)
    assert not saved.is_symlink() and json.loads(saved.read_text(encoding="utf-8"))["line"] == 201
    assert mode(saved) == 0o600


def test_a_resume_file_that_is_a_link_is_ignored(tmp_path: Path, secret: Path) -> None:
    backup = tmp_path / "backup"
    path = write_backup(backup, sample_values(50))
    resume_path(path).symlink_to(secret)
    report = _replayer(tmp_path / "tags.db").run([path])
    assert report.files[0].outcome is Outcome.REPLAYED
    assert report.files[0].resumed_after_line is None and report.files[0].written == 50


def test_a_replayed_link_is_not_followed(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    path = write_backup(backup, sample_values(50))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (backup / "replayed").symlink_to(elsewhere, target_is_directory=True)
    report = _replayer(tmp_path / "tags.db").run([path])
    done = report.files[0]
    assert done.outcome is Outcome.STOPPED and "symbolic link" in done.detail
    assert list(elsewhere.iterdir()) == [] and path.exists()
    assert len(table_rows(tmp_path / "tags.db")) == 50  # the rows are in; the file waits to be moved


def test_open_regular_refuses_links_and_pipes_without_reading(tmp_path: Path, secret: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(secret)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    cases = ((link, "symbolic link"), (pipe, "not a regular file"), (tmp_path, "not a regular file"))
    for path, words in cases:
        with pytest.raises(UnsafeFile, match=words):
            open_regular(path)


# ---------------------------------------------------------------------- modes


def test_backup_and_rejected_files_and_their_directories_are_owner_only(tmp_path: Path) -> None:
    backup = tmp_path / "new" / "backup"
    for kind in SpoolKind:
        spool = CsvSpool(backup, kind=kind)
        path = spool.append([("a",) * len(kind.header)])
        spool.close()
        assert mode(path) == 0o600, kind
    assert mode(backup) == mode(backup.parent) == 0o700


def test_the_mode_is_configurable(tmp_path: Path) -> None:
    modes = FileModes(load_config(None, environ={"COLLECTOR_FILES__MODE": "0640"}, env_file=None).files.mode)
    assert (modes.file, modes.directory) == (0o640, 0o750)
    spool = CsvSpool(tmp_path / "backup", modes=modes)
    path = spool.append([("a",) * 5])
    spool.close()
    assert (mode(path), mode(tmp_path / "backup")) == (0o640, 0o750)


@pytest.mark.parametrize("value", ["0644x", "600", "0400", "0666", "1777"])
def test_a_mode_that_is_not_sensible_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ValueError, match=r"files\.mode"):
        load_config(None, environ={"COLLECTOR_FILES__MODE": value}, env_file=None)


def test_replay_creates_its_files_and_directories_owner_only(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    path = write_backup(backup, [*sample_values(20)])
    with path.open("a", encoding="utf-8") as handle:
        handle.write("damaged\n")
    report = _replayer(tmp_path / "tags.db").run([path])
    done = report.files[0]
    assert done.moved_to is not None and done.rejected_files
    assert mode(backup / "replayed") == 0o700
    assert all(mode(rejected) == 0o600 for rejected in done.rejected_files)


def test_the_database_file_is_created_owner_only_and_an_open_one_is_narrowed(tmp_path: Path) -> None:
    db = tmp_path / "data" / "tags.db"
    assert private_file(db, FileModes()) == []
    assert (mode(db), mode(db.parent)) == (0o600, 0o700)
    db.chmod(0o644)
    wal = db.with_name("tags.db-wal")
    wal.write_bytes(b"")
    wal.chmod(0o644)
    assert private_file(db, FileModes()) == [db, wal]
    assert mode(db) == mode(wal) == 0o600


# ---------------------------------------------------------------------- viewing safely


def test_show_renders_formulas_as_text_and_keeps_numbers(tmp_path: Path) -> None:
    assert [spreadsheet_safe(v) for v in ("=1+1", "+SUM(A1)", "-2+3", "@cmd", "-7", "-1.5", "12", "ok")] == [
        "'=1+1",
        "'+SUM(A1)",
        "'-2+3",
        "'@cmd",
        "-7",
        "-1.5",
        "12",
        "ok",
    ]
    spool = CsvSpool(tmp_path)
    path = spool.append([('=HYPERLINK("x")', "=2*3", "2026-01-01T00:00:00+00:00", "GOOD", "t")])
    spool.close()
    out = io.StringIO()
    assert show_command(path, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("tag_name,tag_value")
    assert lines[1].startswith(""""'=HYPERLINK(""x"")",'=2*3,""")
    stored = path.read_text(encoding="utf-8").splitlines()[1]
    assert stored.startswith('"=HYPERLINK(""x"")",=2*3,'), "the file itself is unchanged"


def test_show_prints_nothing_of_a_file_that_is_not_a_backup_or_is_a_link(
    tmp_path: Path, secret: Path
) -> None:
    link = tmp_path / "backup_20260101_000000.csv"
    link.symlink_to(secret)
    for path in (secret, link):
        out, err = io.StringIO(), io.StringIO()
        assert show_command(path, out=out, err=err) == 2
        assert out.getvalue() == "" and "secret" not in err.getvalue().replace(str(secret), "")
