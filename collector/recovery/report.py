"""What ``collector replay`` and ``collector backups`` print: a table an operator reads, one line
per file, a total and a sentence that says what to do next; or the same as JSON for scripts."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from collector.inventory import Inventory, SpoolFile
from collector.recovery.replay import ExitCode, FileReport, Outcome, ReplayReport
from collector.spool_format import SpoolKind


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _shown(path: Path) -> str:
    """A path as the operator gave it, or relative to the current directory when that is shorter."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return relative if len(relative) < len(str(path)) else str(path)


def _moment(stamp: datetime | None) -> str:
    return stamp.strftime("%Y-%m-%d %H:%M:%S") if stamp is not None else "-"


def _range(first: datetime | None, last: datetime | None) -> str:
    if first is None or last is None:
        return "-"
    end = last.strftime("%H:%M:%S") if first.date() == last.date() else _moment(last)
    return f"{_moment(first)} .. {end}"


# ---------------------------------------------------------------------------------------- replay

REPLAY_COLUMNS = "{result:<12} {read:>9} {written:>9} {present:>9} {rejected:>9}  {file}"


def replay_heading(dry_run: bool) -> str:
    return REPLAY_COLUMNS.format(
        result="RESULT",
        read="READ",
        written="NEW" if dry_run else "WRITTEN",
        present="PRESENT",
        rejected="DAMAGED" if dry_run else "REJECTED",
        file="FILE",
    )


def replay_line(report: FileReport) -> str:
    """One file's line, then indented notes: where it went, its rejected file, why it was skipped."""
    dry = report.outcome is Outcome.CHECKED
    started = report.read or report.finished or report.outcome is Outcome.DATABASE
    line = REPLAY_COLUMNS.format(
        result=report.outcome.value,
        read=report.read if started else "-",
        written=report.written if started else "-",
        present=_count(report.present) if started else "-",
        rejected=(report.damaged if dry else report.rejected) if started else "-",
        file=_shown(report.path),
    )
    notes: list[str] = []
    if report.read and report.first is not None:
        notes.append(f"rows collected {_range(report.first, report.last)} UTC")
    if report.resumed_after_line is not None:
        notes.append(f"resumed after line {report.resumed_after_line}, where an earlier replay stopped")
    if report.moved_to is not None and report.moved_to != report.path:
        notes.append(f"moved to {_shown(report.moved_to)}")
    notes.extend(f"rejected rows with their line numbers: {_shown(p)}" for p in report.rejected_files)
    if dry and report.present is None:
        notes.append("rows already present: not checked (this database offers no key lookup)")
    if report.detail:
        notes.append(report.detail)
    return "\n".join([line, *(f"{'':13}{note}" for note in notes)])


def replay_summary(report: ReplayReport) -> str:
    files = len(report.files)
    if not files:
        return _verdict(report)
    present = "?" if any(f.present is None for f in report.files) else str(report.total("present"))
    if report.dry_run:
        total = (
            f"total: {files} file(s), {report.total('read')} read, {report.total('written')} new, "
            f"{present} already present, {report.total('damaged')} damaged"
        )
    else:
        total = (
            f"total: {files} file(s), {report.total('read')} read, {report.total('written')} written, "
            f"{present} already present, {report.total('rejected')} rejected"
        )
    return f"{total}\n{_verdict(report)}"


def _verdict(report: ReplayReport) -> str:
    if not report.files:
        return "nothing to replay: no backup files waiting."
    code = report.exit_code
    unfinished = [f for f in report.files if not f.finished]
    if code is ExitCode.DATABASE:
        return (
            "stopped: the database failed (see above). Rows already written stay written; run the same "
            "command again when the database is back and it carries on where it stopped."
        )
    if code is ExitCode.INCOMPLETE:
        in_use = sum(f.outcome is Outcome.IN_USE for f in unfinished)
        advice = (
            " Files in use are still being written by the running service, which closes a backup file"
            " when the database is back (or 30 s after its last row): run the same command again then."
            if in_use
            else ""
        )
        return f"{len(unfinished)} file(s) not {'checked' if report.dry_run else 'replayed'}.{advice}"
    if report.dry_run:
        damaged = report.total("damaged")
        extra = f" {damaged} damaged line(s) would go to a rejected file." if damaged else ""
        return f"dry run: nothing was written or moved.{extra}"
    if code is ExitCode.REJECTED:
        return (
            "every file replayed, but some rows were rejected: the rejected files listed above say why, "
            "line by line. Everything else is in the database."
        )
    return "every file replayed: all rows are in the database."


def replay_json(report: ReplayReport) -> str:
    return json.dumps(
        {
            "dry_run": report.dry_run,
            "exit_code": int(report.exit_code),
            "files": [_file_json(f) for f in report.files],
            "totals": {
                name: report.total(name) for name in ("read", "written", "present", "rejected", "damaged")
            },
        },
        indent=2,
    )


def _file_json(report: FileReport) -> dict[str, Any]:
    return {
        "path": str(report.path),
        "outcome": report.outcome.value,
        "read": report.read,
        "written": report.written,
        "present": report.present,
        "rejected": report.rejected,
        "damaged": report.damaged,
        "first": report.first.isoformat() if report.first else None,
        "last": report.last.isoformat() if report.last else None,
        "resumed_after_line": report.resumed_after_line,
        "moved_to": str(report.moved_to) if report.moved_to else None,
        "rejected_files": [str(p) for p in report.rejected_files],
        "detail": report.detail or None,
    }


# --------------------------------------------------------------------------------------- backups

BACKUP_COLUMNS = "{kind:<9} {rows:>9}  {size:>10}  {range:<40} {file}"


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def backups_text(inventory: Inventory, in_use: Callable[[Path], bool], directories: list[Path]) -> str:
    if not inventory.files:
        where = ", ".join(_shown(d) for d in directories)
        return f"no backup or rejected files in {where}: nothing waiting to be replayed."
    lines = [
        BACKUP_COLUMNS.format(
            kind="KIND", rows="ROWS", size="SIZE", range="ROWS COLLECTED (UTC)", file="FILE"
        )
    ]
    busy = {f.path for f in inventory.files if in_use(f.path)}
    for spool_file in inventory.files:
        contents = spool_file.contents
        rows = str(contents.rows) if contents is not None and contents.problem is None else "-"
        covered = _range(contents.first, contents.last) if contents is not None else "-"
        line = BACKUP_COLUMNS.format(
            kind=spool_file.kind,
            rows=rows,
            size=_size(spool_file.bytes),
            range=covered,
            file=_shown(spool_file.path),
        )
        notes = []
        if spool_file.path in busy:
            notes.append("(in use: the service is still writing it)")
        if contents is not None and contents.problem:
            notes.append(f"({contents.problem})")
        lines.append(" ".join([line, *notes]))
    lines.append(_backups_total(inventory, busy))
    return "\n".join(lines)


def _backups_total(inventory: Inventory, busy: set[Path]) -> str:
    parts = []
    for kind in SpoolKind:
        files = inventory.of_kind(kind)
        first, last = inventory.time_range(kind)
        covered = f", rows collected {_range(first, last)} UTC" if first is not None else ""
        parts.append(
            f"{len(files)} {kind.value} file(s), {inventory.rows(kind)} rows, "
            f"{_size(sum(f.bytes for f in files))}{covered}"
        )
    advice = ""
    waiting = [f for f in inventory.of_kind(SpoolKind.BACKUP) if f.path not in busy]
    if waiting:
        advice = "\nto load the backup files into the database: collector replay (try --dry-run first)"
    elif inventory.backup_files:
        advice = (
            "\nthe outage is still going on, or ended less than 30 s ago: the service is still writing"
            " its backup file. List again once the database is back and the file is no longer in use."
        )
    return "total: " + "; ".join(parts) + advice


def backups_json(inventory: Inventory, in_use: Callable[[Path], bool]) -> str:
    def one(spool_file: SpoolFile) -> dict[str, Any]:
        contents = spool_file.contents
        return {
            "path": str(spool_file.path),
            "kind": spool_file.kind.value,
            "bytes": spool_file.bytes,
            "rows": contents.rows if contents is not None else None,
            "first": contents.first.isoformat() if contents and contents.first else None,
            "last": contents.last.isoformat() if contents and contents.last else None,
            "problem": contents.problem if contents is not None else None,
            "in_use": in_use(spool_file.path),
        }

    totals: dict[str, Any] = {}
    for kind in SpoolKind:
        files = inventory.of_kind(kind)
        first, last = inventory.time_range(kind)
        totals[kind.value] = {
            "files": len(files),
            "rows": inventory.rows(kind),
            "bytes": sum(f.bytes for f in files),
            "first": first.isoformat() if first else None,
            "last": last.isoformat() if last else None,
        }
    return json.dumps({"files": [one(f) for f in inventory.files], "totals": totals}, indent=2)
