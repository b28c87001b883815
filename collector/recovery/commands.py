"""``collector replay`` and ``collector backups``: from the validated configuration and the paths
given to the replay engine or the inventory, and their report on stdout."""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from collector.config import Config
from collector.file_safety import FileModes, open_regular
from collector.inventory import ContentsCache, scan
from collector.recovery import report as render
from collector.recovery.files import backup_files, in_use
from collector.recovery.replay import FileReport, Replayer
from collector.retry import RetryPolicy
from collector.sinks import KeyLookup, PermanentSinkError, Sink, build_key_lookup, build_sink
from collector.sinks.factory import writer_workers
from collector.spool_format import NotABackupFile, read_header, records, spreadsheet_safe

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def configured_directories(config: Config) -> list[Path]:
    """The backup directory and, if set, the fallback directory: where the service leaves files."""
    directories = [config.backup.dir]
    if config.backup.fallback_dir is not None:
        directories.append(config.backup.fallback_dir)
    return directories


def replay_command(
    config: Config,
    paths: Sequence[Path],
    *,
    dry_run: bool = False,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    stdout, stderr = out or sys.stdout, err or sys.stderr
    missing = [path for path in paths if not os.path.lexists(path)]
    if missing:
        for path in missing:
            print(f"collector replay: {path}: no such file or directory", file=stderr)
        return EXIT_USAGE
    files = backup_files(list(paths) or [d for d in configured_directories(config) if d.is_dir()])

    def make_sink() -> Sink:
        try:
            return build_sink(config.sink)
        except ValueError as exc:  # the sink's module or driver is missing
            raise PermanentSinkError(str(exc)) from exc

    def make_lookup() -> KeyLookup | None:
        try:
            return build_key_lookup(config.sink)
        except ValueError as exc:
            raise PermanentSinkError(str(exc)) from exc

    replayer = Replayer(
        make_sink,
        lookup_factory=make_lookup,
        batch_size=config.writer.batch_size,
        workers=writer_workers(
            config.writer.workers, "workers" in config.writer.model_fields_set, config.sink.type
        ),
        retry=RetryPolicy.of(config.writer.max_retries, config.writer.backoff_s),
        modes=FileModes(config.files.mode),
    )

    def print_file(done: FileReport) -> None:
        print(render.replay_line(done), file=stdout, flush=True)

    if files and not as_json:
        print(render.replay_heading(dry_run), file=stdout, flush=True)
    try:
        result = replayer.run(files, dry_run=dry_run, on_file=None if as_json else print_file)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: rows already written stay written; run the same command again to carry on"
            " where it stopped.",
            file=stderr,
        )
        return EXIT_INTERRUPTED
    print(render.replay_json(result) if as_json else render.replay_summary(result), file=stdout)
    return int(result.exit_code)


def backups_command(
    config: Config, paths: Sequence[Path], *, as_json: bool = False, out: TextIO | None = None
) -> int:
    stdout = out or sys.stdout
    not_dirs = [path for path in paths if not path.is_dir()]
    if not_dirs:
        for path in not_dirs:
            print(f"collector backups: {path}: not a directory", file=sys.stderr)
        return EXIT_USAGE
    directories = list(paths) or configured_directories(config)
    inventory = scan(directories, contents=ContentsCache())
    if as_json:
        text = render.backups_json(inventory, in_use)
    else:
        text = render.backups_text(inventory, in_use, directories)
    print(text, file=stdout)
    return 0


def show_command(path: Path, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print a backup or rejected file as CSV that is safe to open in a spreadsheet: a field that a
    spreadsheet would run as a formula is shown as text (see ``docs/security.md``). Only a regular
    file that starts with a backup or rejected header is shown; nothing else is echoed."""
    stdout, stderr = out or sys.stdout, err or sys.stderr
    try:
        with open_regular(path) as handle:
            kind, offset = read_header(handle)
            writer = csv.writer(stdout, lineterminator="\n")
            writer.writerow(kind.header)
            for record in records(handle, offset=offset):
                if record.problem is not None:
                    writer.writerow([f"(line {record.line}: {record.problem})"])
                    continue
                writer.writerow([spreadsheet_safe(field) for field in record.fields])
    except NotABackupFile as exc:
        print(f"collector backups: {path}: {exc}", file=stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"collector backups: {path}: {exc.strerror or exc}", file=stderr)
        return EXIT_USAGE
    return 0
