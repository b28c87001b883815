"""Runs the collector with "no space left on device" injected into size-limited directories.

For machines that do not allow mounting a small tmpfs. Usage::

    python -m tests.enospc DIR=BYTES [DIR=BYTES ...] -- run --config collector.yaml

Every backup append ends with ``os.fsync`` before its rows count as backed up; here that call fails
with ENOSPC once the files in a limited directory hold more than its byte limit, as a full disk
would fail the write. The spool then cuts the append back off the file, exactly as after a real
full disk, and the bytes it held are free again.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from collector import cli


def _limits(specs: list[str]) -> dict[Path, int]:
    limits: dict[Path, int] = {}
    for spec in specs:
        directory, _, size = spec.rpartition("=")
        limits[Path(directory).resolve()] = int(size)
    return limits


def _install(limits: dict[Path, int]) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        limit = limits.get(path.parent)
        if limit is not None:
            used = sum(entry.stat().st_size for entry in path.parent.iterdir() if entry.is_file())
            if used > limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_fsync(fd)

    os.fsync = fsync


def main(argv: list[str]) -> int:
    split = argv.index("--")
    limits = _limits(argv[:split])
    for directory in limits:
        directory.mkdir(parents=True, exist_ok=True)
    _install(limits)
    return cli.main(argv[split + 1 :])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
