"""A backup file appears under its real name only once its header is on disk: a process killed
while creating one leaves no empty file that looks like a backup."""

from __future__ import annotations

import errno

import pytest

from collector import backup
from collector.backup import CsvSpool, SpoolError
from collector.spool_format import SpoolKind
from tests.wal_support import BASE

ROW = [("t", "1", BASE.isoformat(), "GOOD", BASE.isoformat())]


def test_a_new_file_is_published_with_its_header_and_leaves_nothing_hidden(tmp_path) -> None:
    spool = CsvSpool(tmp_path)
    path = spool.append(ROW)
    assert path.name.startswith("backup_") and path.read_text().startswith("tag_name,")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    spool.close()


def test_a_header_that_never_reached_the_disk_leaves_no_backup_file(tmp_path, monkeypatch) -> None:
    def disk_full(handle: object, payload: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(backup, "_write_durably", disk_full)
    spool = CsvSpool(tmp_path, kind=SpoolKind.BACKUP)
    with pytest.raises(SpoolError):
        spool.append(ROW)
    assert list(tmp_path.iterdir()) == []  # neither an empty backup_*.csv nor the staging file


def test_a_staging_file_left_by_a_killed_process_is_cleared(tmp_path) -> None:
    stale = tmp_path / ".backup-999999999.new"  # a process that no longer exists
    stale.write_bytes(b"")
    spool = CsvSpool(tmp_path)
    spool.append(ROW)
    spool.close()
    assert not stale.exists()
