"""The low-water mark: every value below it has a final, durable fate; the log may forget them.

Writers finish batches in any order (several workers, a retry queue, the spill guard), so the mark
advances only over contiguous finished ranges: a range that finishes early waits, keyed by where it
starts, until everything before it has finished too.

The mark is recorded in a small file, replaced atomically (write a new file, fsync it, rename it over
the old one, fsync the directory), and segments are deleted only when the *recorded* mark covers
them. Whatever the crash point, the next start finds a mark that is at most behind: never a mark
that points past a segment still needed, never a deleted segment that the mark still needs.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

from collector.file_safety import fsync_directory

# The log holds plant data and is nobody else's business, whatever the process umask.
LOG_FILE_MODE = 0o600
LOG_DIR_MODE = 0o700

MARK_FILE = "mark"
_FORMAT = 1


class LowWaterMark:
    """Tracks finished half-open ranges ``[start, end)`` of sequence numbers; see the module doc.

    Not thread-safe by itself: the log calls it under its own lock.
    """

    def __init__(self, start: int) -> None:
        self._mark = start
        self._waiting: dict[int, int] = {}

    @property
    def mark(self) -> int:
        """The lowest sequence number not yet known to be finished."""
        return self._mark

    @property
    def waiting_ranges(self) -> int:
        """Finished ranges held back by an unfinished one below them."""
        return len(self._waiting)

    def finish(self, start: int, end: int) -> int:
        """Record ``[start, end)`` as finished and return the mark. A range may be finished only once."""
        if end < start:
            raise ValueError(f"range [{start}, {end}) is reversed")
        if start < self._mark or start in self._waiting:
            raise ValueError(f"range [{start}, {end}) was already finished (mark {self._mark})")
        if start == end:
            return self._mark
        if start != self._mark:
            self._waiting[start] = end
            return self._mark
        mark = end
        waiting = self._waiting
        while mark in waiting:
            mark = waiting.pop(mark)
        self._mark = mark
        return mark


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` so that a crash leaves either the old content or the new, never a mix."""
    temporary = path.with_name(path.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, LOG_FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(path.parent)


def _check(mark: int) -> int:
    return zlib.crc32(str(mark).encode("ascii"))


def record_mark(directory: Path, mark: int) -> None:
    """Durably record ``mark`` (see the module doc for the order of steps)."""
    body = {"format": _FORMAT, "mark": mark, "check": _check(mark)}
    write_atomically(directory / MARK_FILE, (json.dumps(body) + "\n").encode("ascii"))


def read_mark(directory: Path) -> tuple[int, str | None]:
    """The recorded mark and, if the file was unusable, why (the mark is then 0: recover everything).

    A missing file is a log that never recorded a mark, not damage.
    """
    path = directory / MARK_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0, None
    try:
        body = json.loads(raw)
        mark = body["mark"]
        if body.get("format") != _FORMAT or not isinstance(mark, int) or mark < 0:
            raise ValueError(f"unexpected content {body!r}")
        if body.get("check") != _check(mark):
            raise ValueError("checksum does not match")
    except (ValueError, KeyError, TypeError) as exc:
        return 0, f"mark file {path} is unreadable ({exc}); reading the whole log"
    return mark, None
