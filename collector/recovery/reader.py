"""Reading a backup file for replay: its rows in batches, with the damaged records met on the way.

The format itself (header, records, how a field becomes a value) is :mod:`collector.spool_format`;
this module groups its records into the chunks a replay writes one at a time, each with the place
where it ends, so a stopped replay can resume after the last chunk it settled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from collector.spool_format import Damaged, Row, SpoolKind, parse_record, records

DAMAGED_CODE = "DAMAGED"
"""The error code of a line that could not be read back as a row."""


@dataclass(slots=True)
class Chunk:
    """Up to ``batch_size`` rows and the damaged records met while collecting them."""

    rows: list[Row] = field(default_factory=list)
    damaged: list[Damaged] = field(default_factory=list)
    end_line: int = 1
    end_offset: int = 0

    @property
    def records(self) -> int:
        return len(self.rows) + len(self.damaged)


def chunks(
    handle: BinaryIO, kind: SpoolKind, batch_size: int, *, offset: int, line: int = 1
) -> Iterator[Chunk]:
    """The file's rows in chunks of ``batch_size``; each chunk also carries the damaged records
    found since the previous one, and where it ends (so a stopped replay can resume after it)."""
    chunk = Chunk(end_line=line, end_offset=offset)
    for record in records(handle, offset=offset, line=line):
        parsed = parse_record(record, kind)
        if isinstance(parsed, Row):
            chunk.rows.append(parsed)
        else:
            chunk.damaged.append(parsed)
        chunk.end_line, chunk.end_offset = record.end_line, record.end_offset
        if len(chunk.rows) >= batch_size:
            yield chunk
            chunk = Chunk(end_line=chunk.end_line, end_offset=chunk.end_offset)
    if chunk.records:
        yield chunk
