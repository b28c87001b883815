"""How the service creates and opens its data files: owner-only modes, and no symbolic links.

Plant data is nobody else's business: backup and rejected files, the directories that hold them and
the SQLite database are created owner-only (``files.mode``, 0600 for files and 0700 for
directories by default). The commands an operator may run with more privileges than the service
(``collector replay``, ``collector backups``) never follow a symbolic link or open anything but a
regular file in a backup directory, so a link planted there cannot make them read, print or
overwrite another file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

DEFAULT_FILE_MODE = 0o600


class UnsafeFile(OSError):
    """A path that is a symbolic link or not a regular file (or directory) where one was expected."""


@dataclass(frozen=True, slots=True)
class FileModes:
    """The permission bits of the files and directories the service creates."""

    file: int = DEFAULT_FILE_MODE

    @property
    def directory(self) -> int:
        """The file mode plus search (x) wherever it grants read: 0600 -> 0700, 0640 -> 0750."""
        return self.file | ((self.file & 0o444) >> 2)

    @property
    def umask(self) -> int:
        """The process umask that gives new files and directories no more than these modes."""
        return 0o777 & ~self.directory


def make_dirs(path: Path, modes: FileModes) -> None:
    """Create ``path`` and any missing parents with the directory mode (existing ones are left as
    they are); an existing ``path`` that is not a directory raises."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=modes.directory)
            os.chmod(directory, modes.directory)  # mkdir's mode is narrowed by the umask only
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))


def create_exclusive(path: Path, modes: FileModes) -> BinaryIO:
    """A new file at ``path`` opened for unbuffered binary writing with the file mode; never
    follows a link (a name that exists, link or not, raises FileExistsError)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, modes.file)
    try:
        os.fchmod(fd, modes.file)
        return os.fdopen(fd, "wb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file and not a symbolic link.

    Raises :class:`UnsafeFile` (and never reads a byte) otherwise, FileNotFoundError if it has gone.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(errno.ELOOP, "a symbolic link: not followed", str(path)) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeFile(errno.EINVAL, f"not a regular file ({_kind(mode)})", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def regular_file(path: Path) -> bool:
    """True if ``path`` itself (not what a link points to) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def real_directory(path: Path) -> bool:
    """True if ``path`` itself is a directory, not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def describe(path: Path) -> str:
    """What ``path`` is, for a message: "a symbolic link", "a directory", ..."""
    try:
        return _kind(os.lstat(path).st_mode)
    except OSError:
        return "missing"


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def private_file(path: Path, modes: FileModes) -> list[Path]:
    """Make sure the file at ``path`` (and SQLite's ``-wal`` and ``-shm`` beside it) is no more open
    than the file mode: create it empty with that mode if it is missing (its missing directories
    with the directory mode), narrow the mode of what exists and is owned by this user. Returns the
    files whose mode was narrowed. A link or anything but a regular file raises :class:`UnsafeFile`.
    """
    make_dirs(path.parent, modes)
    with contextlib.suppress(FileExistsError):
        create_exclusive(path, modes).close()
    narrowed: list[Path] = []
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(errno.EINVAL, f"{describe(candidate)}, not a regular file", str(candidate))
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & ~modes.file:
            os.chmod(candidate, stat.S_IMODE(info.st_mode) & modes.file)
            narrowed.append(candidate)
    return narrowed


def fsync_directory(directory: Path) -> None:
    """Make a create, rename or delete in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
