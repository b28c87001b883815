"""The file side of a replay: which files to read, whether the service still writes them, where a
replayed file goes, and where a stopped replay resumes.

The service's spool holds an exclusive ``flock`` on the backup file it is appending to, from before
it writes the header until it closes the file, and it never reopens a file it closed. So a file that
has its header and can be locked here is finished and will not change. A file of zero bytes may be
in the instant between its creation and the spool's lock: it is treated as in use and never locked
here, so the spool's own lock can never fail because of a replay.

Nothing here follows a symbolic link or opens anything but a regular file: not a backup file, not
the ``replayed/`` directory, not a resume file or its temporary (see :mod:`collector.file_safety`).
A replay may run with more privileges than the service that wrote the directory, so a link planted
there must not make it read, move or overwrite another file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from collector.file_safety import (
    FileModes,
    UnsafeFile,
    create_exclusive,
    describe,
    fsync_directory,
    open_regular,
    real_directory,
    regular_file,
)
from collector.spool_format import SpoolKind, kind_of

REPLAYED_DIR = "replayed"
"""Where a fully replayed file is moved, under its own directory."""


class FileBusy(Exception):
    """The file is being written by a running service, or replayed by another command."""


def backup_files(paths: Iterable[Path]) -> list[Path]:
    """The files to replay: each file named, and the ``backup_*.csv`` files directly in each
    directory named (rejected files are left alone unless named one by one; links and anything
    but regular files are not listed), oldest first."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            names = sorted(
                entry
                for entry in path.iterdir()
                if kind_of(entry.name) is SpoolKind.BACKUP and regular_file(entry)
            )
            found.extend(names)
        else:
            found.append(path)
    seen: set[Path] = set()
    unique = []
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def open_locked(path: Path, *, exclusive: bool) -> BinaryIO:
    """Open ``path`` for reading under a non-blocking ``flock``; the lock lasts until it is closed.

    Raises :class:`FileBusy` if the service (or another replay) holds the file, FileNotFoundError if
    it has gone, :class:`~collector.file_safety.UnsafeFile` if it is a link or not a regular file,
    and OSError if it cannot be read.
    """
    handle = open_regular(path)
    try:
        if os.fstat(handle.fileno()).st_size == 0:
            raise FileBusy("empty: a running service has just created it")
        try:
            fcntl.flock(handle.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise FileBusy("a running service is still writing it (or another replay has it)") from None
            raise
        # Another replay may have moved the file away between our open and our lock.
        try:
            same = os.path.samestat(os.stat(path), os.fstat(handle.fileno()))
        except FileNotFoundError:
            same = False
        if not same:
            raise FileBusy("replayed by another command meanwhile")
    except BaseException:
        handle.close()
        raise
    return handle


def in_use(path: Path) -> bool:
    """True if a running service (or a replay) holds the file, or has only just created it."""
    try:
        with open_locked(path, exclusive=False):
            return False
    except FileBusy:
        return True
    except OSError:
        return False


def move_to_replayed(path: Path, modes: FileModes | None = None) -> Path:
    """Move a replayed file into ``replayed/`` beside it (a name taken there gets ``_1``, ``_2``),
    durably; return the new path. A file already in a ``replayed`` directory stays where it is.

    Raises :class:`~collector.file_safety.UnsafeFile` if ``replayed`` is a link or not a directory.
    """
    if path.parent.name == REPLAYED_DIR:
        return path
    target_dir = path.parent / REPLAYED_DIR
    with contextlib.suppress(FileExistsError):
        target_dir.mkdir(mode=(modes or FileModes()).directory)
    if not real_directory(target_dir):
        raise UnsafeFile(
            errno.ENOTDIR, f"{REPLAYED_DIR}/ is {describe(target_dir)}, not a directory; not followed"
        )
    target = target_dir / path.name
    suffix = 0
    while os.path.lexists(target):
        suffix += 1
        target = target_dir / f"{path.stem}_{suffix}{path.suffix}"
    os.rename(path, target)
    fsync_directory(target_dir)
    fsync_directory(path.parent)
    return target


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a replay that stopped part way through a file had got to: everything up to ``line``
    (ending at byte ``offset``) is in the database or in a rejected file. It is valid only for the
    file as it was (``size``, ``mtime_ns``); a file that changed is replayed from the start."""

    line: int
    offset: int
    size: int
    mtime_ns: int


def resume_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.replay")


def load_resume_point(path: Path, handle: BinaryIO) -> ResumePoint | None:
    """The resume point saved for ``path``, if it still matches the file (a resume file that is a
    link or not a regular file is ignored)."""
    try:
        with open_regular(resume_path(path)) as resume:
            data = json.loads(resume.read(4096).decode("utf-8"))
        point = ResumePoint(**{key: int(data[key]) for key in ResumePoint.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    info = os.fstat(handle.fileno())
    if (point.size, point.mtime_ns) != (
        info.st_size,
        info.st_mtime_ns,
    ) or not 0 < point.offset <= info.st_size:
        return None
    return point


def save_resume_point(
    path: Path, handle: BinaryIO, line: int, offset: int, modes: FileModes | None = None
) -> None:
    """Record where a replay stopped: written to a new temporary file (whatever had its name, a
    planted link included, is removed, never written through), fsynced, then renamed over the
    resume file (a rename replaces a link, it does not follow it)."""
    info = os.fstat(handle.fileno())
    point = ResumePoint(line=line, offset=offset, size=info.st_size, mtime_ns=info.st_mtime_ns)
    target = resume_path(path)
    temporary = target.with_name(target.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    with create_exclusive(temporary, modes or FileModes()) as out:
        out.write(json.dumps(asdict(point)).encode("utf-8"))
        os.fsync(out.fileno())
    os.replace(temporary, target)


def clear_resume_point(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        resume_path(path).unlink()
