"""What ``collector wal`` prints: the log's segments, the unfinished values it holds, their time
range, the mark, and any damage, read without changing a byte (safe while the service runs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from collector.model import format_timestamp
from collector.wal.codec import PayloadError, decode_values
from collector.wal.framing import payload_of
from collector.wal.segments import QUARANTINE_DIR, DamageReport, scan_directory


@dataclass(frozen=True, slots=True)
class SegmentSummary:
    """One segment file as ``collector wal`` lists it."""

    name: str
    bytes: int
    records: int
    first_seq: int | None
    end_seq: int | None


@dataclass(slots=True)
class WalInspection:
    """The whole report; ``clean`` is false when anything would be cut or quarantined at start."""

    directory: str
    exists: bool
    mark: int = 0
    mark_problem: str | None = None
    next_seq: int = 0
    segments: list[SegmentSummary] = field(default_factory=list)
    total_bytes: int = 0
    pending_values: int = 0
    pending_records: int = 0
    oldest: str | None = None
    newest: str | None = None
    damage: list[DamageReport] = field(default_factory=list)
    unreadable_records: int = 0
    quarantine_files: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.damage and not self.unreadable_records and self.mark_problem is None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["damage"] = [{**asdict(d), "kind": d.kind.value} for d in self.damage]
        data["clean"] = self.clean
        return data


def inspect_log(directory: Path) -> WalInspection:
    """Read the log at ``directory`` (every checksum, every pending payload) and summarise it."""
    report = WalInspection(str(directory), directory.is_dir())
    if not report.exists:
        return report
    scan = scan_directory(directory)
    report.mark, report.mark_problem, report.next_seq = scan.mark, scan.mark_problem, scan.next_seq
    report.total_bytes = scan.total_bytes
    report.damage = scan.damage
    for segment in scan.segments:
        records = segment.records
        report.segments.append(
            SegmentSummary(
                segment.path.name,
                segment.size,
                len(records),
                records[0].first_seq if records else None,
                records[-1].end_seq if records else None,
            )
        )
    oldest: datetime | None = None
    newest: datetime | None = None
    cache: dict[Path, bytes] = {}
    for segment, record, skip in scan.pending():
        data = cache.setdefault(segment.path, segment.path.read_bytes())
        try:
            values = decode_values(payload_of(data, record), record.count)[skip:]
        except PayloadError:
            report.unreadable_records += 1
            continue
        report.pending_records += 1
        report.pending_values += len(values)
        for value in values:
            if oldest is None or value.timestamp < oldest:
                oldest = value.timestamp
            if newest is None or value.timestamp > newest:
                newest = value.timestamp
    report.oldest = format_timestamp(oldest) if oldest else None
    report.newest = format_timestamp(newest) if newest else None
    quarantine = directory / QUARANTINE_DIR
    if quarantine.is_dir():
        report.quarantine_files = sorted(p.name for p in quarantine.iterdir())
    return report


def render(report: WalInspection) -> str:
    """The report as an operator reads it."""
    if not report.exists:
        return f"write-ahead log {report.directory}: no such directory (nothing logged yet)\n"
    lines = [
        f"write-ahead log {report.directory}",
        f"  mark            {report.mark}  (every value below it has a final, durable fate)",
        f"  next sequence   {report.next_seq}",
        f"  segments        {len(report.segments)}, {report.total_bytes} bytes",
        f"  unfinished      {report.pending_values} values in {report.pending_records} records",
        f"  time range      {report.oldest or '-'} .. {report.newest or '-'}",
    ]
    if report.mark_problem:
        lines.append(f"  mark problem    {report.mark_problem}")
    for segment in report.segments:
        span = "empty" if segment.first_seq is None else f"seq {segment.first_seq}..{segment.end_seq}"
        lines.append(f"    {segment.name}  {segment.bytes:>10} bytes  {segment.records:>6} records  {span}")
    if report.damage or report.unreadable_records:
        lines.append("  damage (cut or quarantined at the next start):")
        for damage in report.damage:
            values = "unknown" if damage.values is None else str(damage.values)
            lines.append(
                f"    {damage.segment} offset {damage.offset}: {damage.kind.value}, "
                f"{damage.length} bytes, {values} unfinished values"
            )
        if report.unreadable_records:
            lines.append(
                f"    {report.unreadable_records} records with a good checksum but an unreadable payload"
            )
    else:
        lines.append("  damage          none")
    if report.quarantine_files:
        lines.append(f"  quarantined     {len(report.quarantine_files)} files in {QUARANTINE_DIR}/:")
        lines.extend(f"    {name}" for name in report.quarantine_files)
    return "\n".join(lines) + "\n"
