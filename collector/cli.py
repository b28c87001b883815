"""The ``collector`` command: run the service, check its configuration, print DDL, list and replay
backup files."""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO, cast

import yaml

from collector import __version__
from collector.config import Config, ConfigError, LoadedConfig, read_config
from collector.file_safety import FileModes
from collector.logs import configure_logging, log_event, log_failure
from collector.preflight import preflight
from collector.redaction import Redactor, otlp_secrets
from collector.sinks import DIALECTS, SinkError, schema_ddl

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_STARTUP = 3

log = logging.getLogger("collector.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collector",
        description="Buffer PLC tag values and write them to Oracle, PostgreSQL or SQLite in batches.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--config",
            type=Path,
            default=os.environ.get("COLLECTOR_CONFIG"),
            help="YAML configuration file (default: $COLLECTOR_CONFIG, else the built-in defaults)",
        )
        dotenv = sub.add_mutually_exclusive_group()
        dotenv.add_argument(
            "--env-file",
            type=Path,
            default=None,
            help="dotenv file to read; it must exist (default: .env in the working directory, if any)",
        )
        dotenv.add_argument("--no-env-file", action="store_true", help="read no dotenv file, not even ./.env")

    run = commands.add_parser("run", help="run the service until SIGTERM/SIGINT (or --duration)")
    with_config(run)
    run.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long")

    check = commands.add_parser(
        "check-config", help="validate the configuration and print it, secrets masked"
    )
    with_config(check)

    schema = commands.add_parser("schema", help="print the CREATE TABLE statement for a database")
    with_config(schema)
    schema.add_argument("--dialect", required=True, choices=sorted(DIALECTS))

    replay = commands.add_parser(
        "replay",
        help="load backup CSV files into the configured database (see docs/operations.md)",
        description=(
            "Load backup files into the configured database, skipping rows already there, and move each"
            " fully replayed file to replayed/ beside it. Exit codes: 0 all replayed; 4 replayed, but some"
            " rows rejected (see the rejected files); 5 some files not replayed (in use, not backup files,"
            " unreadable); 6 the database failed (run again when it is back); 2 bad configuration or path;"
            " 130 interrupted."
        ),
    )
    with_config(replay)
    replay.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="backup files or directories (default: the configured backup directories)",
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="read and check, count rows already present; write nothing"
    )
    replay.add_argument("--json", action="store_true", help="print the report as JSON")
    replay.add_argument("-v", "--verbose", action="store_true", help="log every step on stderr")

    backups = commands.add_parser(
        "backups", help="list backup and rejected files: rows, size, the time range they cover"
    )
    with_config(backups)
    backups.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="DIR",
        help="directories to list (default: the configured backup directories)",
    )
    backups.add_argument("--json", action="store_true", help="print the listing as JSON")
    backups.add_argument(
        "--show",
        type=Path,
        metavar="FILE",
        help="print one backup or rejected file as CSV safe to open in a spreadsheet (docs/security.md)",
    )

    wal = commands.add_parser(
        "wal",
        help="show what the write-ahead log holds: segments, unfinished values, time range, mark, damage",
        description=(
            "Read the write-ahead log without changing it (safe while the service runs). Exit codes: 0"
            " clean; 1 damage found that the next start would cut or quarantine (with --verify); 2 bad"
            " configuration."
        ),
    )
    with_config(wal)
    wal.add_argument(
        "--dir", type=Path, default=None, help="the log directory (default: from the configuration)"
    )
    wal.add_argument("--verify", action="store_true", help="exit 1 if any record or segment is damaged")
    wal.add_argument("--json", action="store_true", help="print the report as JSON")

    simulate = commands.add_parser(
        "simulate",
        help="run the built-in plant simulator and publish its polls to an MQTT broker (docs/intake.md)",
        description=(
            "Publish every simulated poll as one JSON message on PREFIX/<group> with QoS 1, until"
            " SIGTERM/SIGINT, --duration or --cycles. Exit codes: 0 every message acknowledged by the"
            " broker; 1 some were not; 2 bad arguments or configuration."
        ),
    )
    with_config(simulate)
    from collector.sources.simulate_command import add_arguments

    add_arguments(simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        loaded = read_config(
            args.config,
            env_file=None if args.no_env_file else (args.env_file or ".env"),
            require_env_file=args.env_file is not None,
        )
    except ConfigError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    handler = {
        "run": _run,
        "check-config": _check_config,
        "schema": _schema,
        "replay": _replay,
        "backups": _backups,
        "wal": _wal,
        "simulate": _simulate,
    }[args.command]
    redact = redactor_for(loaded.config)
    try:
        return handler(loaded, args, redact)
    except Exception as exc:
        # Whatever escaped is a fault to report, but its message may quote a connect string, and
        # Python's own traceback printer would show it as is.
        print(f"collector: unexpected error: {redact(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)
        print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        return EXIT_FAILURE


class RedactingWriter(io.TextIOBase):
    """A text stream that masks secrets in everything written through it."""

    def __init__(self, stream: TextIO, redact: Redactor) -> None:
        super().__init__()
        self._stream = stream
        self._redact = redact

    def write(self, text: str) -> int:
        return self._stream.write(self._redact(text))

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()


def redactor_for(config: Config) -> Redactor:
    """A redactor that knows every secret of ``config`` and of the trace exporter's settings."""
    return Redactor([*config.secrets(), *otlp_secrets(os.environ)])


def _print_warnings(loaded: LoadedConfig, redact: Redactor) -> None:
    for note in loaded.notes:
        print(f"collector: note: {redact(note)}", file=sys.stderr)
    for warning in loaded.warnings:
        print(f"collector: warning: {redact(warning)}", file=sys.stderr)


def _log_warnings(loaded: LoadedConfig) -> None:
    for note in loaded.notes:
        log_event(log, logging.INFO, "config_note", note)
    for warning in loaded.warnings:
        log_event(log, logging.WARNING, "config_warning", warning)


def _check_config(loaded: LoadedConfig, _args: argparse.Namespace, redact: Redactor) -> int:
    _print_warnings(loaded, redact)
    print(yaml.safe_dump(loaded.config.masked(), sort_keys=False), end="")
    problems = preflight(loaded.config)
    for problem in problems:
        print(f"collector: {redact(problem)}", file=sys.stderr)
    return EXIT_CONFIG if problems else EXIT_OK


def _schema(loaded: LoadedConfig, args: argparse.Namespace, _redact: Redactor) -> int:
    config = loaded.config
    try:
        ddl = schema_ddl(args.dialect, config.sink.table, config.sink.columns)
    except ValueError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(ddl, end="")
    return EXIT_OK


def _run(loaded: LoadedConfig, args: argparse.Namespace, redact: Redactor) -> int:
    # Imported here so that check-config and schema start fast and need no database driver.
    from collector.limits import raise_open_file_limit
    from collector.service import CollectorService, StartupError

    config = loaded.config
    configure_logging(config.logging.level, config.logging.format, redactor=redact)
    _log_warnings(loaded)
    _private_files(config)
    # A directory the service cannot write is a configuration error at start (it would otherwise
    # run, lose what it accepts, and exit 0); one that fails later is a fault it rides out.
    problems = preflight(config)
    if problems:
        for problem in problems:
            print(f"collector: {redact(problem)}", file=sys.stderr)
        log_event(log, logging.CRITICAL, "startup_failed", "; ".join(problems))
        return EXIT_CONFIG
    # Before anything opens a file: backups must never be refused for want of a descriptor.
    raise_open_file_limit()
    try:
        service = CollectorService(config)
    except (SinkError, OSError) as exc:
        log_event(log, logging.CRITICAL, "startup_failed", "cannot open the sink", error=str(exc))
        return EXIT_STARTUP
    except Exception as exc:  # a driver's own exception type; its traceback helps, masked
        log_failure(log, logging.CRITICAL, "startup_failed", "cannot open the sink", exc)
        return EXIT_STARTUP
    # This process owns tracing: a sink's own spans (trace.get_tracer) go where the writer's go.
    service.telemetry.tracing.install_globally()
    try:
        service.run(args.duration)
    except StartupError as exc:
        log_event(log, logging.CRITICAL, "startup_failed", str(exc))
        return EXIT_STARTUP
    return EXIT_OK


def _private_files(config: Config) -> None:
    """Everything this process creates (database and its journal, CSV files, directories, the
    write-ahead log) is no more open than ``files.mode``, whichever code creates it."""
    os.umask(FileModes(config.files.mode).umask)


def _replay(loaded: LoadedConfig, args: argparse.Namespace, redact: Redactor) -> int:
    from collector.recovery.commands import replay_command

    configure_logging("INFO" if args.verbose else "WARNING", loaded.config.logging.format, redactor=redact)
    _log_warnings(loaded)
    _private_files(loaded.config)
    # The report quotes the database's errors, which may quote the connect string.
    return replay_command(
        loaded.config,
        args.paths,
        dry_run=args.dry_run,
        as_json=args.json,
        out=cast(TextIO, RedactingWriter(sys.stdout, redact)),
        err=cast(TextIO, RedactingWriter(sys.stderr, redact)),
    )


def _backups(loaded: LoadedConfig, args: argparse.Namespace, redact: Redactor) -> int:
    from collector.recovery.commands import backups_command, show_command

    if args.show is not None:
        return show_command(args.show)
    _print_warnings(loaded, redact)
    return backups_command(loaded.config, args.paths, as_json=args.json)


def _simulate(loaded: LoadedConfig, args: argparse.Namespace, redact: Redactor) -> int:
    from collector.sources.simulate_command import simulate_command

    configure_logging(loaded.config.logging.level, loaded.config.logging.format, redactor=redact)
    return simulate_command(loaded.config, args)


def _wal(loaded: LoadedConfig, args: argparse.Namespace, _redact: Redactor) -> int:
    import json

    from collector.wal.inspect import inspect_log, render

    report = inspect_log(args.dir or loaded.config.wal_dir)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(render(report), end="")
    return EXIT_FAILURE if args.verify and not report.clean else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
