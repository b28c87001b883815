"""Latency of the monitoring endpoints while the pipeline runs at the specification's load.

Starts `collector run` (the simulator at 3 491 values/s into SQLite in a temporary directory),
waits for it to be ready, then requests `/api/v1/status`, `/metrics` and, as the floor,
`/healthz` in turns, each on a new connection, at a steady pace, and reports the latency
percentiles of each, along with what the pipeline did meanwhile (values written per second,
buffer high-water mark, overflow, CPU). The specification asks for answers within 500 ms (SC-006).

    python3 bench/bench_api.py [--requests 1000] [--rate 20] [--tags 3491]
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402

SC006_LIMIT_MS = 500.0
ENDPOINTS = ("/api/v1/status", "/metrics", "/healthz")
"""``/healthz`` does almost nothing: it is the floor (connection, request thread, scheduling)."""


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


def cpu_seconds(metrics: bytes) -> float:
    for line in metrics.decode().splitlines():
        if line.startswith("process_cpu_seconds_total "):
            return float(line.split()[1])
    raise ValueError("no process_cpu_seconds_total in /metrics")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per endpoint")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second, all endpoints")
    parser.add_argument("--tags", type=int, default=3491, help="simulated tags polled every second")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds to run before measuring")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTOR_", "OTEL_"))}
        env.update(
            PYTHONPATH=str(ROOT),
            COLLECTOR_SOURCE__TAGS=str(args.tags),
            COLLECTOR_SINK__TYPE="sqlite",
            COLLECTOR_SINK__PATH=f"{tmp}/tags.db",
            COLLECTOR_BACKUP__DIR=f"{tmp}/backup",
            COLLECTOR_API__PORT=str(port),
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "collector", "run"],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if get(port, "/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    print("collector did not become ready", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            time.sleep(args.warmup)
            before = json.loads(get(port, "/api/v1/status")[1])
            cpu_before = cpu_seconds(get(port, "/metrics")[1])
            started = time.monotonic()
            latencies: dict[str, list[float]] = {path: [] for path in ENDPOINTS}
            sizes: dict[str, int] = {}
            interval = 1.0 / args.rate
            for n in range(args.requests * len(ENDPOINTS)):
                path = ENDPOINTS[n % len(ENDPOINTS)]
                status, body, elapsed = get(port, path)
                if status != 200:
                    print(f"{path} answered {status}", file=sys.stderr)
                    return 1
                latencies[path].append(elapsed)
                sizes[path] = len(body)
                next_at = started + (n + 1) * interval
                time.sleep(max(0.0, next_at - time.monotonic()))
            elapsed_s = time.monotonic() - started
            after = json.loads(get(port, "/api/v1/status")[1])
            cpu_share = (cpu_seconds(get(port, "/metrics")[1]) - cpu_before) / elapsed_s
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(60)

    written_rate = (after["values"]["written"] - before["values"]["written"]) / elapsed_s
    accepted_rate = (after["values"]["accepted"] - before["values"]["accepted"]) / elapsed_s
    print(f"machine: {machine()}")
    print(f"pipeline: {args.tags} tags/s simulated; over {elapsed_s:.0f} s accepted {accepted_rate:.0f}/s,")
    print(
        f"  wrote {written_rate:.0f}/s, buffer high-water {after['buffer']['high_water_mark']},"
        f" overflow {after['buffer']['overflow']}, balanced {after['values']['balanced']}, exit {code}"
    )
    print(f"  collector CPU {cpu_share:.0%} of one core (requests included)")
    print(f"requests: {args.requests} per endpoint, {args.rate:g}/s in turns, a new connection each")
    print()
    floor = [1000 * x for x in latencies["/healthz"]]
    print("| endpoint | body | p50 | p90 | p99 | max | mean | p50 / floor | p99 / 500 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in ENDPOINTS:
        ms = [1000 * x for x in latencies[path]]
        figures = [percentile(ms, q) for q in (0.5, 0.9, 0.99)] + [max(ms), statistics.fmean(ms)]
        cells = " | ".join(f"{x:.2f} ms" for x in figures)
        to_floor = percentile(ms, 0.5) / percentile(floor, 0.5)
        to_limit = percentile(ms, 0.99) / SC006_LIMIT_MS
        print(f"| `{path}` | {sizes[path] / 1024:.1f} KiB | {cells} | {to_floor:.2f} | {to_limit:.3f} |")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
