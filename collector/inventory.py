"""What backup and rejected files are waiting in the backup directories (US4-4).

:func:`scan` alone is cheap enough to call at every scrape: it lists the directories and stats the
files; it does not read them. Given a :class:`ContentsCache` it also reports each file's row count
and the time range its rows cover. Those need the file read, so the cache keeps them by (path,
size, modification time): a file that has not changed is not read again, and a file that has only
grown (the one the service is appending to) is read from where the last reading stopped. The
service refreshes its cache on its monitor thread and the status API reads it with
``refresh=False``, so an API request never waits for a file to be read.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import BinaryIO

from collector.file_safety import open_regular
from collector.model import parse_timestamp
from collector.spool_format import (
    TIMESTAMP_FIELD,
    NotABackupFile,
    SpoolKind,
    kind_of,
    read_header,
    records,
)


@dataclass(frozen=True, slots=True)
class FileContents:
    """What a file holds: rows (every record after the header) and the collection-time range of
    the rows whose timestamp can be read."""

    rows: int
    first: datetime | None
    last: datetime | None
    problem: str | None = None
    """Set when the file is not a backup or rejected file at all (then ``rows`` is 0)."""


@dataclass(frozen=True, slots=True)
class SpoolFile:
    path: Path
    kind: SpoolKind
    bytes: int
    modified: float
    contents: FileContents | None = None
    """Row count and time range, when :func:`scan` was given a cache."""


@dataclass(frozen=True, slots=True)
class Inventory:
    files: tuple[SpoolFile, ...]

    def of_kind(self, kind: SpoolKind) -> list[SpoolFile]:
        return [f for f in self.files if f.kind == kind]

    @property
    def backup_files(self) -> int:
        return len(self.of_kind(SpoolKind.BACKUP))

    @property
    def backup_bytes(self) -> int:
        return sum(f.bytes for f in self.of_kind(SpoolKind.BACKUP))

    @property
    def rejected_files(self) -> int:
        return len(self.of_kind(SpoolKind.REJECTED))

    @property
    def rejected_bytes(self) -> int:
        return sum(f.bytes for f in self.of_kind(SpoolKind.REJECTED))

    def rows(self, kind: SpoolKind) -> int:
        """Rows in the files of ``kind`` (0 for files scanned without a cache)."""
        return sum(f.contents.rows for f in self.of_kind(kind) if f.contents is not None)

    @property
    def backup_rows(self) -> int:
        return self.rows(SpoolKind.BACKUP)

    @property
    def rejected_rows(self) -> int:
        return self.rows(SpoolKind.REJECTED)

    def time_range(self, kind: SpoolKind) -> tuple[datetime | None, datetime | None]:
        """The earliest and latest collection time of the rows in the files of ``kind``."""
        firsts = [f.contents.first for f in self.of_kind(kind) if f.contents and f.contents.first]
        lasts = [f.contents.last for f in self.of_kind(kind) if f.contents and f.contents.last]
        return (min(firsts) if firsts else None, max(lasts) if lasts else None)


def scan(
    directories: Iterable[Path | str], *, contents: ContentsCache | None = None, refresh: bool = True
) -> Inventory:
    """The backup and rejected files directly in ``directories`` (files already replayed and moved
    to a subdirectory are not waiting, so they are not listed); with ``contents``, their row counts
    and time ranges too, read as needed, or with ``refresh=False`` as last read (None for a file
    not read yet)."""
    scanned = [Path(d) for d in directories]
    found: list[SpoolFile] = []
    for directory in scanned:
        try:
            entries = list(directory.iterdir())
        except OSError:
            continue
        for path in entries:
            kind = kind_of(path.name)
            if kind is None:
                continue
            try:
                info = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue  # a link or anything but a file is never the service's, and never followed
            found.append(SpoolFile(path, kind, info.st_size, info.st_mtime))
    found.sort(key=lambda f: (f.modified, f.path.name))
    if contents is not None:
        if refresh:
            found = [replace(f, contents=contents.contents(f.path)) for f in found]
            contents.forget_missing({f.path for f in found}, scanned)
        else:
            found = [replace(f, contents=contents.cached(f.path)) for f in found]
    return Inventory(tuple(found))


@dataclass(frozen=True, slots=True)
class _Reading:
    """What is known of one file, and how far it has been read."""

    identity: tuple[int, int, int, int]
    """(device, inode, size, mtime_ns) when it was read."""
    offset: int
    line: int
    contents: FileContents


class ContentsCache:
    """Row counts and time ranges of backup and rejected files, read once per change; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readings: dict[Path, _Reading] = {}

    def contents(self, path: Path) -> FileContents:
        """The file's contents as they are now (empty if it cannot be read)."""
        try:
            info = path.lstat()
        except OSError:
            return FileContents(0, None, None, "cannot be read")
        identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        with self._lock:
            known = self._readings.get(path)
        if known is not None and known.identity == identity:
            return known.contents
        grown = (
            known is not None
            and known.identity[:2] == identity[:2]
            and info.st_size >= known.offset > 0
            and known.contents.problem is None
        )
        reading = _read(path, identity, known if grown else None)
        with self._lock:
            self._readings[path] = reading
        return reading.contents

    def cached(self, path: Path) -> FileContents | None:
        """What the last reading found, without touching the file (None if never read)."""
        with self._lock:
            known = self._readings.get(path)
        return known.contents if known is not None else None

    def forget_missing(self, present: set[Path], directories: Iterable[Path]) -> None:
        """Drop what is known of files in ``directories`` that are not ``present`` any more (they
        were replayed or deleted); files elsewhere are left alone."""
        scanned = set(directories)
        with self._lock:
            for path in [p for p in self._readings if p.parent in scanned and p not in present]:
                del self._readings[path]


def _read(path: Path, identity: tuple[int, int, int, int], since: _Reading | None) -> _Reading:
    try:
        with open_regular(path) as handle:
            if since is not None:
                offset, line = since.offset, since.line
                rows, first, last = since.contents.rows, since.contents.first, since.contents.last
            else:
                if os.fstat(handle.fileno()).st_size == 0:
                    return _Reading(identity, 0, 1, FileContents(0, None, None))
                try:
                    _kind, offset = read_header(handle)
                except NotABackupFile as exc:
                    return _Reading(identity, 0, 1, FileContents(0, None, None, str(exc)))
                line, rows, first, last = 1, 0, None, None
            plain = _read_plain(handle, offset)
            if plain is not None:
                length, found, stamps = plain
                stamps.update(s for s in (first, last) if s is not None)
                return _Reading(
                    identity,
                    offset + length,
                    line + found,
                    FileContents(rows + found, min(stamps, default=None), max(stamps, default=None)),
                )
            for record in records(handle, offset=offset, line=line, complete_only=True):
                rows += 1
                offset, line = record.end_offset, record.end_line
                if len(record.fields) <= TIMESTAMP_FIELD:
                    continue
                try:
                    stamp = parse_timestamp(record.fields[TIMESTAMP_FIELD])
                except ValueError:
                    continue
                if first is None or stamp < first:
                    first = stamp
                if last is None or stamp > last:
                    last = stamp
    except OSError as exc:
        return _Reading(identity, 0, 1, FileContents(0, None, None, f"cannot be read: {exc.strerror or exc}"))
    return _Reading(identity, offset, line, FileContents(rows, first, last))


_PLAIN_CHUNK = 8 * 1024 * 1024
_third_field = itemgetter(TIMESTAMP_FIELD)
_split_fields = methodcaller("split", b",", TIMESTAMP_FIELD + 1)


def _read_plain(handle: BinaryIO, offset: int) -> tuple[int, int, set[datetime]] | None:
    """The common case read in C: what follows ``offset`` up to the last line end, when it holds no
    quote, carriage return, undecodable byte, blank line or line of fewer than three fields (every
    row the service writes for a plant's names and numbers), so that every line is one row.

    Returns (bytes read, rows, the distinct timestamps that parse), or None to read record by
    record. The service appends rows while the monitor reads them, so this is the cost a spilled
    value pays a second time; a poll's values share their timestamp, so only a few are parsed.
    """
    handle.seek(offset)
    length = rows = 0
    texts: set[bytes] = set()
    rest = b""
    while chunk := handle.read(_PLAIN_CHUNK):
        data = rest + chunk
        end = data.rfind(b"\n") + 1
        data, rest = data[:end], data[end:]
        if b'"' in data or b"\r" in data:
            return None
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        lines = data.split(b"\n")
        lines.pop()  # what follows the last line end
        try:
            texts.update(map(_third_field, map(_split_fields, lines)))
        except IndexError:  # a blank line, or one with fewer fields
            return None
        length += end
        rows += len(lines)
    stamps: set[datetime] = set()
    for text in texts:
        try:
            stamps.add(parse_timestamp(text.decode("utf-8")))
        except ValueError:
            continue
    return length, rows, stamps
