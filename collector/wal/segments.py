"""The log directory on disk: which segment files it holds, what they contain, and repairing damage.

A segment is named after the first sequence number it was opened for (``00000000000000001234.wal``),
so the names sort in log order and a segment's values end where the next segment's begin. Reading a
directory never fails because of what is in it: a file that is not a whole log is reported as damage,
and :func:`repair` cuts a torn tail (a crash mid-append) or moves a damaged range to ``quarantine/``
and rewrites the segment without it, so a damaged log is read past, never looped on.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from collector.file_safety import fsync_directory
from collector.wal.framing import SEGMENT_HEADER, Damage, DamageKind, RecordRef, scan_segment
from collector.wal.mark import LOG_DIR_MODE, read_mark, write_atomically

log = logging.getLogger("collector.wal")

SEGMENT_SUFFIX = ".wal"
QUARANTINE_DIR = "quarantine"
LOCK_FILE = "LOCK"
_SEGMENT_NAME = re.compile(r"^(\d{20})\.wal$")


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files in log order, as (first sequence number from the name, path)."""
    found = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        match = _SEGMENT_NAME.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), Path(entry.path)))
    return sorted(found)


@dataclass(slots=True)
class SegmentReport:
    """One segment file as read: its whole records and its damage."""

    path: Path
    first_seq: int
    size: int
    records: list[RecordRef]
    damage: list[Damage]

    @property
    def end_seq(self) -> int:
        return self.records[-1].end_seq if self.records else self.first_seq


@dataclass(frozen=True, slots=True)
class DamageReport:
    """A damaged range, where it is, and how many unfinished values it held (None if unknown)."""

    segment: str
    offset: int
    length: int
    kind: DamageKind
    values: int | None


@dataclass(slots=True)
class LogScan:
    """Everything a directory holds, read without changing anything."""

    directory: Path
    mark: int
    mark_problem: str | None
    segments: list[SegmentReport] = field(default_factory=list)
    damage: list[DamageReport] = field(default_factory=list)

    @property
    def next_seq(self) -> int:
        """The first sequence number a new value may take: past every record, name and the mark."""
        ends = [self.mark] + [max(s.end_seq, s.first_seq) for s in self.segments]
        return max(ends)

    def pending(self) -> Iterator[tuple[SegmentReport, RecordRef, int]]:
        """Every record holding values at or above the mark, with how many of its first values to
        skip (those below the mark, or repeated by a record that overlaps the one before)."""
        floor = self.mark
        for segment in self.segments:
            for record in segment.records:
                if record.end_seq <= floor:
                    continue
                yield segment, record, max(0, floor - record.first_seq)
                floor = record.end_seq

    @property
    def pending_values(self) -> int:
        return sum(record.count - skip for _, record, skip in self.pending())

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self.segments)


def scan_directory(directory: Path) -> LogScan:
    """Read every segment and the mark. Never raises for content, only for an unreadable directory."""
    mark, problem = read_mark(directory)
    scan = LogScan(directory, mark, problem)
    for first_seq, path in list_segments(directory):
        data = path.read_bytes()
        result = scan_segment(data)
        scan.segments.append(SegmentReport(path, first_seq, result.size, result.records, result.damage))
    scan.damage = _describe_damage(scan)
    return scan


def _describe_damage(scan: LogScan) -> list[DamageReport]:
    """Name each damaged range and count the unfinished values it cost, from the sequence numbers of
    the whole records on either side (unknown for a tail with nothing after it)."""
    reports = []
    for index, segment in enumerate(scan.segments):
        following = _next_first_seq(scan.segments, index)
        for damage in segment.damage:
            before = [r for r in segment.records if r.end <= damage.offset]
            after = [r for r in segment.records if r.offset >= damage.end]
            low = before[-1].end_seq if before else segment.first_seq
            high = after[0].first_seq if after else following
            values = None if high is None else max(0, high - max(low, scan.mark))
            reports.append(DamageReport(segment.path.name, damage.offset, damage.length, damage.kind, values))
    return reports


def _next_first_seq(segments: list[SegmentReport], index: int) -> int | None:
    for segment in segments[index + 1 :]:
        if segment.records:
            return segment.records[0].first_seq
        return segment.first_seq
    return None


@dataclass(frozen=True, slots=True)
class RepairSummary:
    """What :func:`repair` changed."""

    torn_cut_bytes: int
    quarantined_ranges: int
    quarantined_bytes: int
    quarantined_values: int
    deleted_segments: int


def repair(scan: LogScan) -> RepairSummary:
    """Make the directory a clean log again, then delete segments the mark already covers.

    A torn tail of the last segment is cut (a crash hit mid-append). Any other damaged range is first
    saved to ``quarantine/`` (fsynced), then the segment is rewritten without it (new file, fsync,
    rename, fsync the directory); a crash between the two steps repeats them on the next start under
    the same quarantine name. A segment that does not even start with the segment header is moved to
    ``quarantine/`` whole.
    """
    torn = ranges = quarantined = values = deleted = 0
    directory = scan.directory
    last = len(scan.segments) - 1
    described = iter(scan.damage)
    for index, segment in enumerate(scan.segments):
        if not segment.damage:
            continue
        reports = [next(described) for _ in segment.damage]
        data = segment.path.read_bytes()
        kinds = {damage.kind for damage in segment.damage}
        if kinds == {DamageKind.TORN_TAIL} and index == last:
            cut = segment.damage[0]
            torn += cut.length
            _cut_tail(segment.path, cut.offset)
            log.warning(
                "write-ahead log: cut a torn tail of %d bytes from %s at offset %d (a crash mid-append)",
                cut.length,
                segment.path.name,
                cut.offset,
            )
            continue
        quarantine = directory / QUARANTINE_DIR
        quarantine.mkdir(mode=LOG_DIR_MODE, exist_ok=True)
        if DamageKind.BAD_HEADER in kinds or segment.damage[0].offset < len(SEGMENT_HEADER):
            target = quarantine / segment.path.name
            os.replace(segment.path, target)
            fsync_directory(quarantine)
            fsync_directory(directory)
        else:
            for damage in segment.damage:
                target = quarantine / f"{segment.path.stem}.{damage.offset}.bad"
                write_atomically(target, data[damage.offset : damage.end])
            kept = b"".join(data[r.offset : r.end] for r in segment.records)
            write_atomically(segment.path, SEGMENT_HEADER + kept)
        for damage, report in zip(segment.damage, reports, strict=True):
            ranges += 1
            quarantined += damage.length
            values += report.values or 0
            log.error(
                "write-ahead log: %s damage in %s at offset %d (%d bytes, %s unfinished values) "
                "moved to %s; the rest of the log is recovered",
                damage.kind.value,
                segment.path.name,
                damage.offset,
                damage.length,
                "unknown" if report.values is None else report.values,
                quarantine,
            )
    deleted = delete_covered(directory, scan.mark, keep_last=False)
    return RepairSummary(torn, ranges, quarantined, values, deleted)


def _cut_tail(path: Path, offset: int) -> None:
    if offset <= len(SEGMENT_HEADER):
        # Nothing whole in it: a segment created just before the crash.
        path.unlink()
        fsync_directory(path.parent)
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def delete_covered(directory: Path, mark: int, *, keep_last: bool, active: Path | None = None) -> int:
    """Delete the segments whose every value is below ``mark`` (a *recorded* mark). Returns how many.

    A segment's values end where the next segment's begin; the last segment's end is read from its
    records (or it is kept, with ``keep_last``). ``active`` is never deleted.
    """
    segments = list_segments(directory)
    deleted = 0
    for index, (first_seq, path) in enumerate(segments):
        if path == active:
            break
        if index + 1 < len(segments):
            end = segments[index + 1][0]
        elif keep_last:
            break
        else:
            result = scan_segment(path.read_bytes())
            if result.damage:
                break
            end = result.records[-1].end_seq if result.records else first_seq
        if end > mark:
            break
        path.unlink()
        deleted += 1
    if deleted:
        fsync_directory(directory)
    return deleted
