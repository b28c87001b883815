"""What backup and rejected files are waiting in the backup directories (US4-4).

Cheap enough to call at every scrape: it lists the directories and stats the files; it does not
read them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from collector.backup import BACKUP_PREFIX, REJECTED_PREFIX

FILE_PATTERN = re.compile(rf"^(?P<kind>{BACKUP_PREFIX}|{REJECTED_PREFIX})_\d{{8}}_\d{{6}}(?:_\d+)?\.csv$")


@dataclass(frozen=True, slots=True)
class SpoolFile:
    path: Path
    kind: str
    """``backup`` or ``rejected``."""
    bytes: int
    modified: float


@dataclass(frozen=True, slots=True)
class Inventory:
    files: tuple[SpoolFile, ...]

    def of_kind(self, kind: str) -> list[SpoolFile]:
        return [f for f in self.files if f.kind == kind]

    @property
    def backup_files(self) -> int:
        return len(self.of_kind(BACKUP_PREFIX))

    @property
    def backup_bytes(self) -> int:
        return sum(f.bytes for f in self.of_kind(BACKUP_PREFIX))

    @property
    def rejected_files(self) -> int:
        return len(self.of_kind(REJECTED_PREFIX))

    @property
    def rejected_bytes(self) -> int:
        return sum(f.bytes for f in self.of_kind(REJECTED_PREFIX))


def scan(directories: Iterable[Path | str]) -> Inventory:
    """The backup and rejected files directly in ``directories`` (files already replayed and moved
    to a subdirectory are not waiting, so they are not listed)."""
    found: list[SpoolFile] = []
    for directory in directories:
        try:
            entries = list(Path(directory).iterdir())
        except OSError:
            continue
        for path in entries:
            match = FILE_PATTERN.match(path.name)
            if not match:
                continue
            try:
                info = path.stat()
            except OSError:
                continue
            found.append(SpoolFile(path, match["kind"], info.st_size, info.st_mtime))
    found.sort(key=lambda f: (f.modified, f.path.name))
    return Inventory(tuple(found))
