import csv
import errno
import fcntl
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.backup import CsvSpool, SpoolError
from collector.model import InvalidValue, TagValue
from collector.spool_format import (
    BACKUP_HEADER,
    REJECTED_HEADER,
    SpoolKind,
    backup_rows,
    format_value,
    invalid_rows,
    rejected_rows,
)
from tests.fakes import ManualClock

STAMP = datetime(2026, 11, 28, 21, 0, 0, 123456, tzinfo=UTC)
ATTEMPT = datetime(2026, 11, 28, 21, 0, 5, 1, tzinfo=UTC)
FIXED_WALL = datetime(2026, 11, 28, 21, 0, 5, tzinfo=UTC).timestamp()


def read(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def blocked_dir(tmp_path: Path, name: str) -> Path:
    """A directory path that cannot be created: a regular file sits where its parent should be.
    (Permission bits do not stop root, so this is the portable way to get an unwritable path.)"""
    blocker = tmp_path / f"{name}-is-a-file"
    blocker.write_text("not a directory")
    return blocker / name


def test_rows_keep_awkward_names_and_values_exactly(tmp_path):
    spool = CsvSpool(tmp_path, wall_clock=lambda: FIXED_WALL)
    batch = [
        TagValue('Line "A", pump 1', 1.5, STAMP),
        TagValue("multi\nline", "text, with comma", STAMP),
        TagValue("flag", True, STAMP),
        TagValue("bad", None, STAMP, "BAD"),
        TagValue("huge", 10**40, STAMP),
        TagValue("nan", float("nan"), STAMP),
        TagValue("한글 태그", "운전", STAMP),
    ]
    path = spool.append(backup_rows(batch, ATTEMPT))
    assert path.name == "backup_20261128_210005.csv"
    rows = read(path)
    assert tuple(rows[0]) == BACKUP_HEADER
    assert rows[1] == [
        'Line "A", pump 1',
        "1.5",
        "2026-11-28T21:00:00.123456+00:00",
        "GOOD",
        "2026-11-28T21:00:05.000001+00:00",
    ]
    assert [r[0] for r in rows[1:]] == [v.tag_name for v in batch]
    assert [r[1] for r in rows[1:]] == ["1.5", "text, with comma", "1", "", str(10**40), "nan", "운전"]
    assert rows[4][3] == "BAD"
    assert spool.stats().rows == len(batch)


def test_appends_go_to_one_file_until_rotated_and_names_never_collide(tmp_path):
    spool = CsvSpool(tmp_path, wall_clock=lambda: FIXED_WALL)
    one = [TagValue("T", 1, STAMP)]
    first = spool.append(backup_rows(one, ATTEMPT))
    assert spool.append(backup_rows(one, ATTEMPT)) == first
    spool.rotate()
    second = spool.append(backup_rows(one, ATTEMPT))
    spool.rotate()
    third = spool.append(backup_rows(one, ATTEMPT))
    assert [p.name for p in (first, second, third)] == [
        "backup_20261128_210005.csv",
        "backup_20261128_210005_1.csv",
        "backup_20261128_210005_2.csv",
    ]
    assert len(read(first)) == 3
    assert spool.stats().files_created == 3


def test_file_is_rotated_when_it_reaches_the_size_limit(tmp_path):
    spool = CsvSpool(tmp_path, max_file_bytes=4096, wall_clock=lambda: FIXED_WALL)
    batch = [TagValue(f"T{i}", i, STAMP) for i in range(100)]
    paths = {spool.append(backup_rows(batch, ATTEMPT)) for _ in range(5)}
    assert len(paths) > 1
    assert sum(len(read(p)) - 1 for p in paths) == 500


def test_idle_file_is_closed_so_the_next_outage_starts_a_new_one(tmp_path):
    clock = ManualClock()
    spool = CsvSpool(tmp_path, idle_close_s=30, clock=clock, wall_clock=lambda: FIXED_WALL)
    spool.append(backup_rows([TagValue("T", 1, STAMP)], ATTEMPT))
    clock.advance(29)
    assert not spool.close_if_idle()
    clock.advance(1)
    assert spool.close_if_idle()
    assert spool.stats().current_file is None


def test_open_file_is_locked_against_replay_and_released_when_closed(tmp_path):
    spool = CsvSpool(tmp_path, wall_clock=lambda: FIXED_WALL)
    path = spool.append(backup_rows([TagValue("T", 1, STAMP)], ATTEMPT))
    with open(path) as other:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        spool.close()
        fcntl.flock(other.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)


def test_unwritable_directory_falls_back_and_then_reports_loss(tmp_path, caplog):
    fallback = tmp_path / "fallback"
    spool = CsvSpool(blocked_dir(tmp_path, "backup"), fallback_dir=fallback, wall_clock=lambda: FIXED_WALL)
    path = spool.append(backup_rows([TagValue("T", 1, STAMP)], ATTEMPT))
    assert path.parent == fallback
    assert spool.stats().failures == 1
    assert "backup_write_failed" in caplog.text or "cannot write" in caplog.text

    nowhere = CsvSpool(blocked_dir(tmp_path, "a"), fallback_dir=blocked_dir(tmp_path, "b"))
    with pytest.raises(SpoolError, match="no directory could take 1 rows"):
        nowhere.append(backup_rows([TagValue("T", 1, STAMP)], ATTEMPT))
    assert nowhere.stats().failures == 2
    assert nowhere.stats().rows == 0


def test_a_failed_write_is_cut_back_so_no_partial_batch_remains(tmp_path, monkeypatch):
    spool = CsvSpool(tmp_path, fallback_dir=tmp_path / "fallback", wall_clock=lambda: FIXED_WALL)
    first = spool.append(backup_rows([TagValue("kept", 1, STAMP)], ATTEMPT))
    size_before = first.stat().st_size

    import collector.backup as backup_module

    real_fsync = backup_module.os.fsync
    calls = {"n": 0}

    def full_disk(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(backup_module.os, "fsync", full_disk)
    batch = [TagValue(f"T{i}", i, STAMP) for i in range(50)]
    second = spool.append(backup_rows(batch, ATTEMPT))
    assert second.parent == tmp_path / "fallback"
    assert first.stat().st_size == size_before  # the half-written batch was cut back off
    assert [r[0] for r in read(first)[1:]] == ["kept"]
    assert len(read(second)) == 51
    assert spool.stats().rows == 51


def test_rejected_and_invalid_rows_carry_the_reason(tmp_path):
    spool = CsvSpool(tmp_path, kind=SpoolKind.REJECTED, wall_clock=lambda: FIXED_WALL)
    spool.append(
        rejected_rows([(TagValue("T", 1e200, STAMP), "ORA-01438", "value larger than precision")], ATTEMPT)
    )
    spool.append(
        invalid_rows([InvalidValue(None, object, "yesterday", "MAYBE", "tag name must be a string")], ATTEMPT)
    )
    rows = read(tmp_path / "rejected_20261128_210005.csv")
    assert tuple(rows[0]) == REJECTED_HEADER
    assert rows[1][5:] == ["ORA-01438", "value larger than precision"]
    assert rows[2][0] == "None"
    assert rows[2][2] == "'yesterday'"
    assert rows[2][5:] == ["INVALID", "tag name must be a string"]


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, ""), (True, "1"), (False, "0"), (0.1, "0.1"), (1e-300, "1e-300"), (-7, "-7"), ("a", "a")],
)
def test_value_spelling(value, text):
    assert format_value(value) == text
