"""The ``collector`` command: run the service, check its configuration, print DDL, list and replay
backup files."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from collector import __version__
from collector.config import Config, ConfigError, load_config
from collector.logs import configure_logging, log_event
from collector.preflight import preflight
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
        sub.add_argument(
            "--env-file", type=Path, default=Path(".env"), help="dotenv file to read (default: .env)"
        )

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config, env_file=args.env_file)
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
    }[args.command]
    return handler(config, args)


def _check_config(config: Config, _args: argparse.Namespace) -> int:
    print(yaml.safe_dump(config.masked(), sort_keys=False), end="")
    problems = preflight(config)
    for problem in problems:
        print(f"collector: {problem}", file=sys.stderr)
    return EXIT_CONFIG if problems else EXIT_OK


def _schema(config: Config, args: argparse.Namespace) -> int:
    try:
        ddl = schema_ddl(args.dialect, config.sink.table, config.sink.columns)
    except ValueError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(ddl, end="")
    return EXIT_OK


def _run(config: Config, args: argparse.Namespace) -> int:
    # Imported here so that check-config and schema start fast and need no database driver.
    from collector.service import CollectorService, StartupError

    configure_logging(config.logging.level, config.logging.format)
    # A directory the service cannot write is a configuration error at start (it would otherwise
    # run, lose what it accepts, and exit 0); one that fails later is a fault it rides out.
    problems = preflight(config)
    if problems:
        for problem in problems:
            print(f"collector: {problem}", file=sys.stderr)
        log_event(log, logging.CRITICAL, "startup_failed", "; ".join(problems))
        return EXIT_CONFIG
    try:
        service = CollectorService(config)
    except (SinkError, OSError) as exc:
        log_event(log, logging.CRITICAL, "startup_failed", "cannot open the sink", error=str(exc))
        return EXIT_STARTUP
    # This process owns tracing: a sink's own spans (trace.get_tracer) go where the writer's go.
    service.telemetry.tracing.install_globally()
    try:
        service.run(args.duration)
    except StartupError as exc:
        log_event(log, logging.CRITICAL, "startup_failed", str(exc))
        return EXIT_STARTUP
    return EXIT_OK


def _replay(config: Config, args: argparse.Namespace) -> int:
    from collector.recovery.commands import replay_command

    configure_logging("INFO" if args.verbose else "WARNING", config.logging.format)
    return replay_command(config, args.paths, dry_run=args.dry_run, as_json=args.json)


def _backups(config: Config, args: argparse.Namespace) -> int:
    from collector.recovery.commands import backups_command

    return backups_command(config, args.paths, as_json=args.json)


def _wal(config: Config, args: argparse.Namespace) -> int:
    import json

    from collector.wal.inspect import inspect_log, render

    report = inspect_log(args.dir or config.wal_dir)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(render(report), end="")
    return EXIT_FAILURE if args.verify and not report.clean else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
