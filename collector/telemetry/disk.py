"""Free space on the file systems that hold the backup directories.

A backup directory is the last place values can go when the database is down; an outage on a full
disk loses them. :class:`DiskSpace` reads the free and total size of the file system under each
directory (``statvfs``, as node_exporter's ``node_filesystem_avail_bytes`` does) on the telemetry
sampler thread, so a scrape never waits for a slow or hung file system.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class DiskReading:
    """The file system under one backup directory."""

    directory: str
    """``primary`` (``backup.dir``) or ``fallback`` (``backup.fallback_dir``)."""
    path: str
    avail_bytes: int
    """Bytes an unprivileged process may still write (``f_bavail``)."""
    size_bytes: int

    @property
    def avail_ratio(self) -> float:
        return self.avail_bytes / self.size_bytes if self.size_bytes else 0.0


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing parent: a backup directory is created on first use, and
    until then the space that matters is that of the file system it will be created on."""
    candidate = path.absolute()
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    return candidate


def read_disk(directory: str, path: Path) -> DiskReading | None:
    """One reading, or None when the file system cannot be read."""
    try:
        stats = os.statvfs(existing_ancestor(path))
    except OSError:
        return None
    return DiskReading(
        directory=directory,
        path=str(path.absolute()),
        avail_bytes=stats.f_bavail * stats.f_frsize,
        size_bytes=stats.f_blocks * stats.f_frsize,
    )


class DiskSpace:
    """The latest readings of the backup directories' file systems; thread-safe."""

    def __init__(self, directories: Sequence[Path] = ()) -> None:
        roles = ("primary", "fallback")
        self._directories = [(roles[min(i, 1)], Path(d)) for i, d in enumerate(directories)]
        self._lock = threading.Lock()
        self._readings: tuple[DiskReading, ...] = ()

    def refresh(self) -> None:
        readings = tuple(r for role, path in self._directories if (r := read_disk(role, path)) is not None)
        with self._lock:
            self._readings = readings

    def readings(self) -> tuple[DiskReading, ...]:
        with self._lock:
            return self._readings
