"""Start-up checks of the directories the service must be able to write: the write-ahead log and
the backup and fallback directories. (A database that cannot be reached at start, a SQLite file on
an unmounted volume included, is an outage like any other: the service starts and backs up.)

A directory that cannot be created or written when the service starts is a configuration error:
``collector check-config`` reports it and ``collector run`` refuses to start, naming the key. (A
directory that fails later, while the service runs, is a fault: the service keeps running and says
so loudly.) Each check creates the directory if needed and writes, fsyncs and removes a probe file,
so a read-only mount, a full disk that refuses new files or a path through a regular file all show.
"""

from __future__ import annotations

import os
from pathlib import Path

from collector.config import Config

_PROBE = ".collector-write-probe"


def writable_problem(directory: Path) -> str | None:
    """Why ``directory`` cannot be used for writing, or None when it can."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f"{_PROBE}-{os.getpid()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def directories(config: Config) -> list[tuple[str, Path]]:
    """The (key, directory) pairs the configured service writes to."""
    found: list[tuple[str, Path]] = []
    if config.wal.durability != "off":
        found.append(("wal.dir", config.wal_dir))
    found.append(("backup.dir", config.backup.dir))
    if config.backup.fallback_dir is not None:
        found.append(("backup.fallback_dir", config.backup.fallback_dir))
    return found


def preflight(config: Config) -> list[str]:
    """One message per directory that cannot be written, naming its key; empty when all is well."""
    problems = []
    for key, directory in directories(config):
        problem = writable_problem(directory)
        if problem is not None:
            problems.append(f"{key}: cannot write to {directory}: {problem}")
    return problems
