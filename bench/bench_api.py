"""Latency of the monitoring endpoints while the pipeline runs at the specification's load, beside
prometheus_client's own server in the same process.

A child process runs the collector service (the simulator at 3 491 values/s into SQLite in a
temporary directory) and, on a second port, prometheus_client's ``start_http_server`` serving the
same registry: the reference, under exactly the same load. The parent requests ``/healthz``,
``/readyz``, ``/metrics`` and ``/api/v1/status`` from the collector and ``/metrics`` from the
reference, in turns, each on a new connection (as a probe or a simple scraper does), at a steady
pace, and reports the latency percentiles of each and the ratio of each p99 to the reference's.

To show where the time goes, the child also times each request inside the application (the work:
snapshot, serialization) so the table splits the client's latency into work and everything else
(connection, threads, waiting for the interpreter lock). ``--switch-interval`` sets the child's
switch interval (``0.005`` is Python's default; by default the service's own, 1 ms) and
``--tags 0`` runs without load, to compare.

    python3 bench/bench_api.py [--requests 1000] [--rate 25] [--tags 3491] [--switch-interval S]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402
from collector.interpreter import GIL_SWITCH_INTERVAL_S  # noqa: E402

ENDPOINTS = ("/healthz", "/readyz", "/metrics", "/api/v1/status")
REFERENCE = "reference /metrics"
TARGETS = {"/healthz": 5.0, "/readyz": 5.0, "/metrics": 10.0, "/api/v1/status": 10.0}
"""p99 aims in milliseconds."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(port: int, path: str) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return response.status, body, time.perf_counter() - started


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# ---------------------------------------------------------------------------------- the child


class Timed:
    """WSGI middleware that records how long the application itself took, per path."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self.times: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        body = list(self._app(environ, start_response))
        elapsed = time.perf_counter() - started
        with self._lock:
            self.times[environ.get("PATH_INFO", "")].append(elapsed)
        return body


def serve(args: argparse.Namespace) -> int:
    """The child: the collector and the reference server until SIGTERM; then the in-app times."""
    from prometheus_client import start_http_server

    from collector.config import load_config
    from collector.service import CollectorService

    environ = {
        "COLLECTOR_SINK__TYPE": "sqlite",
        "COLLECTOR_SINK__PATH": f"{args.dir}/tags.db",
        "COLLECTOR_BACKUP__DIR": f"{args.dir}/backup",
        "COLLECTOR_API__PORT": str(args.port),
        "COLLECTOR_SOURCE__TAGS": str(max(args.tags, 1)),
        "COLLECTOR_SOURCE__GROUPS": "1" if args.tags <= 1 else "10",
    }
    if args.tags == 0:
        environ["COLLECTOR_SOURCE__TYPE"] = "external"  # no load at all
    # The service sets the interpreter's switch interval while it runs (1 ms unless told otherwise).
    interval = args.switch_interval or GIL_SWITCH_INTERVAL_S
    config = load_config(None, environ=environ, env_file=None)
    service = CollectorService(config, gil_switch_interval_s=interval)
    assert service.api is not None
    timed = Timed(service.api._app)
    service.api._app = timed
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service.start()
    start_http_server(args.reference_port, addr="127.0.0.1", registry=service.telemetry.registry)
    print("ready", flush=True)
    stop.wait()
    snapshot = service.snapshot()
    service.stop()
    report = {"app_times": timed.times, "accepted": snapshot.accepted, "written": snapshot.writer.written}
    print(json.dumps(report))
    return 0


# ---------------------------------------------------------------------------------- the parent


def measure(args: argparse.Namespace) -> int:
    port, reference = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTOR_", "OTEL_"))}
        env["PYTHONPATH"] = str(ROOT)
        child = [sys.executable, __file__, "--serve", "--dir", tmp, "--port", str(port)]
        child += ["--reference-port", str(reference), "--tags", str(args.tags)]
        if args.switch_interval:
            child += ["--switch-interval", str(args.switch_interval)]
        process = subprocess.Popen(child, cwd=tmp, env=env, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            print("the collector did not start", file=sys.stderr)
            return 1
        try:
            time.sleep(args.warmup)
            cpu_before = time.clock_gettime(time.CLOCK_MONOTONIC)
            latencies: dict[str, list[float]] = {name: [] for name in (*ENDPOINTS, REFERENCE)}
            sizes: dict[str, int] = {}
            order = [(port, path, path) for path in ENDPOINTS] + [(reference, "/metrics", REFERENCE)]
            interval = 1.0 / args.rate
            started = time.monotonic()
            for n in range(args.requests * len(order)):
                target_port, path, name = order[n % len(order)]
                status, body, elapsed = get(target_port, path)
                if status != 200:
                    print(f"{name} answered {status}", file=sys.stderr)
                    return 1
                latencies[name].append(elapsed)
                sizes[name] = len(body)
                time.sleep(max(0.0, started + (n + 1) * interval - time.monotonic()))
            elapsed_s = time.monotonic() - started
            del cpu_before
        finally:
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=120)
        summary = json.loads(out.strip().splitlines()[-1])

    app_times: dict[str, list[float]] = summary["app_times"]
    print(f"machine: {machine()}")
    load = f"{args.tags} tags/s simulated" if args.tags else "no load"
    switch = f", switch interval {(args.switch_interval or GIL_SWITCH_INTERVAL_S) * 1000:g} ms"
    print(f"pipeline: {load}{switch}; {summary['written']} values written over {elapsed_s:.0f} s")
    print(f"requests: {args.requests} per endpoint, {args.rate:g}/s in turns, a new connection each")
    print()
    ref_p99 = percentile([1000 * x for x in latencies[REFERENCE]], 0.99)
    print("| endpoint | body | p50 | p90 | p99 | max | in-app p99 | p99 / reference p99 | p99 aim |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in (*ENDPOINTS, REFERENCE):
        ms = [1000 * x for x in latencies[name]]
        figures = [percentile(ms, q) for q in (0.5, 0.9, 0.99)] + [max(ms)]
        cells = " | ".join(f"{x:.2f} ms" for x in figures)
        app = app_times.get(name, [])
        in_app = f"{percentile([1000 * x for x in app], 0.99):.2f} ms" if app else "-"
        aim = f"{TARGETS[name]:g} ms" if name in TARGETS else "-"
        ratio = percentile(ms, 0.99) / ref_p99
        print(f"| `{name}` | {sizes[name] / 1024:.1f} KiB | {cells} | {in_app} | {ratio:.2f} | {aim} |")
    mean = statistics.fmean(1000 * x for x in latencies["/healthz"])
    print(f"\n/healthz mean {mean:.2f} ms")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per endpoint")
    parser.add_argument("--rate", type=float, default=25.0, help="requests per second, all endpoints")
    parser.add_argument("--tags", type=int, default=3491, help="simulated tags polled every second (0: idle)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds to run before measuring")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=0.0,
        help="the child's interpreter switch interval (default: the service's own)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reference-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    return serve(args) if args.serve else measure(args)


if __name__ == "__main__":
    raise SystemExit(main())
