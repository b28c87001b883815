"""``collector simulate``: the built-in plant simulator publishing to an MQTT broker.

The simulator's settings come from the configuration's ``source`` section when it describes the
simulator (so one file can serve both), each overridden by its command-line option.
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from collector.config import Config, SourceConfig, read_password_file
from collector.logs import log_event
from collector.sources.simulator import Simulator, split_tags

if TYPE_CHECKING:
    from collector.sources.publisher import MqttPublisher

log = logging.getLogger("collector.publisher")

EXIT_OK = 0
EXIT_UNACKNOWLEDGED = 1
EXIT_BAD_ARGUMENT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mqtt", required=True, metavar="HOST[:PORT]", help="the broker to publish to (port 1883 by default)"
    )
    parser.add_argument("--topic-prefix", default="plant", help="polls go to PREFIX/<group> (default: plant)")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--protocol", choices=("5", "3.1.1"), default="5")
    parser.add_argument("--client-id", default=None, help="default: plant-simulator-<host name>")
    parser.add_argument("--username", default=None)
    parser.add_argument("--password-file", type=Path, default=None, help="the password on its first line")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca-file", type=Path, default=None, help="CA certificate(s) to trust with --tls")
    parser.add_argument("--groups", type=int, default=None, help="polling groups (default: source.groups)")
    parser.add_argument("--tags", type=int, default=None, help="total tags over the groups (3491: the plant)")
    parser.add_argument("--tags-per-group", type=int, default=None)
    parser.add_argument("--interval", type=float, default=None, metavar="SECONDS", help="polling interval")
    parser.add_argument("--bad-ratio", type=float, default=None, help="share of readings that fail (BAD)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--ledger", type=Path, default=None, help="CSV of every value generated")
    parser.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="stop after this long"
    )
    parser.add_argument("--cycles", type=int, default=None, help="stop after this many polling cycles")


def _broker(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":") if spec.count(":") == 1 else (spec, "", "")
    if not host or (port and not port.isdigit()):
        raise ValueError(f"--mqtt {spec!r}: expected HOST or HOST:PORT")
    return host, int(port) if port else 1883


def simulator_for(config: Config, args: argparse.Namespace, data_queue: queue.Queue[object]) -> Simulator:
    base = config.source if isinstance(config.source, SourceConfig) else SourceConfig()
    groups = args.groups or base.groups
    tags = args.tags if args.tags is not None else base.tags
    per_group = args.tags_per_group or base.tags_per_group
    sizes = split_tags(tags, groups) if tags is not None else [per_group] * groups
    return Simulator(
        data_queue,
        groups=groups,
        tags_per_group=sizes,
        interval_s=args.interval or base.interval_s,
        bad_ratio=args.bad_ratio if args.bad_ratio is not None else base.bad_ratio,
        seed=args.seed if args.seed is not None else base.seed,
        ledger=args.ledger or base.ledger,
        cycles=args.cycles,
    )


def simulate_command(config: Config, args: argparse.Namespace) -> int:
    # Here rather than at the top: the command line is built without the MQTT client.
    from collector.sources.publisher import MqttPublisher, PublishSettings

    try:
        host, port = _broker(args.mqtt)
        password = read_password_file(args.password_file) if args.password_file else None
        data_queue: queue.Queue[object] = queue.Queue()
        simulator = simulator_for(config, args, data_queue)
    except ValueError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGUMENT
    publisher = MqttPublisher(
        data_queue,
        PublishSettings(
            host=host,
            port=port,
            protocol=args.protocol,
            client_id=args.client_id or f"plant-simulator-{socket.gethostname()}",
            username=args.username,
            password=password,
            tls=args.tls,
            ca_file=args.ca_file,
            topic_prefix=args.topic_prefix,
            qos=args.qos,
        ),
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log_event(log, logging.INFO, "signal_received", signal=signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _publish(simulator, publisher, stop, args.duration, args.cycles)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _publish(
    simulator: Simulator,
    publisher: MqttPublisher,
    stop: threading.Event,
    duration: float | None,
    cycles: int | None,
) -> int:
    publisher.start()
    simulator.start()
    log_event(log, logging.INFO, "simulating", rate_per_s=round(simulator.rate, 1), cycles=cycles)
    deadline = threading.Timer(duration, stop.set) if duration else None
    if deadline is not None:
        deadline.daemon = True
        deadline.start()
    while not stop.is_set() and not simulator.wait(0.2):
        pass
    simulator.stop()  # every poll generated is on the queue (and in the ledger)
    if deadline is not None:
        deadline.cancel()
    report = publisher.stop()
    print(
        f"published {report.polls} polls ({report.values} values), acknowledged {report.acknowledged},"
        f" unacknowledged {report.unacknowledged}"
    )
    return EXIT_OK if not report.unacknowledged else EXIT_UNACKNOWLEDGED
