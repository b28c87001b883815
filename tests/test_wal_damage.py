"""Damage at random places: startup recovers every whole record before (and after) the damage,
cuts a torn tail, quarantines a damaged middle, and never fails or loops."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.wal import WriteAheadLog
from collector.wal.framing import scan_segment
from collector.wal.segments import QUARANTINE_DIR, list_segments, scan_directory
from tests.wal_support import ManualClock, crash, feed, poll

POLLS = 30


def _written_log() -> tuple[Path, dict[int, list]]:
    """A crashed log of POLLS records over several segments; returns the records by sequence number."""
    directory = Path(tempfile.mkdtemp(prefix="wal-damage-"))
    wal = WriteAheadLog(directory, segment_bytes=4096, max_bytes=1 << 20, clock=ManualClock())
    wal.open()
    records = {}
    for index in range(POLLS):
        batch = poll(index)
        records[index * 10] = batch
        wal.append(batch)
    crash(wal)
    return directory, records


def _records_on_disk(directory: Path) -> list[tuple[Path, int, int, int]]:
    """(segment, offset, end, first_seq) of every record as written."""
    found = []
    for _, path in list_segments(directory):
        for record in scan_segment(path.read_bytes()).records:
            found.append((path, record.offset, record.end, record.first_seq))
    return found


def _reopen(directory: Path) -> tuple[WriteAheadLog, list]:
    wal = WriteAheadLog(directory, segment_bytes=4096, max_bytes=1 << 20, clock=ManualClock())
    report = wal.open()
    values = feed(wal)
    return wal, values, report  # type: ignore[return-value]


settle = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settle
@given(st.data())
def test_a_truncated_segment_loses_only_the_records_past_the_cut(data: st.DataObject) -> None:
    directory, records = _written_log()
    try:
        on_disk = _records_on_disk(directory)
        segments = list_segments(directory)
        _, path = data.draw(st.sampled_from(segments))
        size = path.stat().st_size
        cut = data.draw(st.integers(0, size - 1))
        with path.open("r+b") as handle:
            handle.truncate(cut)
        # Whole records survive if they lie before the cut or in another segment.
        survivors = [seq for (p, _, end, seq) in on_disk if p != path or end <= cut]
        expected = [value for seq in survivors for value in records[seq]]

        wal, values, report = _reopen(directory)
        assert values == expected
        boundaries = {8} | {end for (p, _, end, _) in on_disk if p == path}
        if path == segments[-1][1]:
            assert report.repair.quarantined_ranges == 0
            assert (report.repair.torn_cut_bytes > 0) == (cut not in boundaries and cut > 0)
            if cut < 8:
                assert not path.exists()  # nothing whole in it: the file goes
        elif cut not in boundaries:
            # A segment cut short with others after it lost its own end: quarantined, not "torn".
            assert report.repair.quarantined_ranges == 1
        crash(wal)
        _assert_clean_on_second_start(directory, expected)
    finally:
        shutil.rmtree(directory)


@settle
@given(st.data())
def test_corrupt_bytes_cost_only_the_records_they_touch(data: st.DataObject) -> None:
    directory, records = _written_log()
    try:
        on_disk = _records_on_disk(directory)
        segments = list_segments(directory)
        _, path = data.draw(st.sampled_from(segments))
        content = bytearray(path.read_bytes())
        offsets = data.draw(st.lists(st.integers(0, len(content) - 1), min_size=1, max_size=4, unique=True))
        for offset in offsets:
            content[offset] ^= data.draw(st.integers(1, 255))
        path.write_bytes(bytes(content))
        header_hit = any(offset < 8 for offset in offsets)
        touched = {
            seq for (p, start, end, seq) in on_disk if p == path and any(start <= o < end for o in offsets)
        }
        if header_hit:
            touched |= {seq for (p, _, _, seq) in on_disk if p == path}
        expected = [value for (_, _, _, seq) in on_disk if seq not in touched for value in records[seq]]

        wal, values, report = _reopen(directory)
        assert values == expected
        if touched and not (path == segments[-1][1] and _only_tail(on_disk, path, touched)):
            assert report.repair.quarantined_ranges >= 1
            assert (directory / QUARANTINE_DIR).is_dir() and any((directory / QUARANTINE_DIR).iterdir())
        crash(wal)
        _assert_clean_on_second_start(directory, expected)
    finally:
        shutil.rmtree(directory)


def _only_tail(on_disk: list, path: Path, touched: set[int]) -> bool:
    """Damage confined to the last records of the last segment reads as a torn tail (cut, not kept)."""
    seqs = [seq for (p, _, _, seq) in on_disk if p == path]
    return bool(seqs) and sorted(touched) == seqs[len(seqs) - len(touched) :]


def _assert_clean_on_second_start(directory: Path, expected: list) -> None:
    """The repaired log reads clean and gives the same values again: no loop, no second quarantine."""
    scan = scan_directory(directory)
    assert scan.damage == []
    wal, values, report = _reopen(directory)
    assert values == expected
    assert report.repair.quarantined_ranges == 0 and report.repair.torn_cut_bytes == 0
    wal.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_files_of_garbage_never_stop_the_start(garbage: list[bytes]) -> None:
    directory = Path(tempfile.mkdtemp(prefix="wal-garbage-"))
    try:
        for index, content in enumerate(garbage):
            (directory / f"{index * 100:020d}.wal").write_bytes(content)
        wal = WriteAheadLog(directory, segment_bytes=4096, max_bytes=1 << 20, clock=ManualClock())
        wal.open()
        assert feed(wal) == []
        wal.append(poll(1))
        wal.release(0, 10)
        wal.close()
        assert scan_directory(directory).damage == []
    finally:
        shutil.rmtree(directory)
