"""The benchmark scripts keep working: each runs briefly and prints the figures it exists for.

Speed is never asserted here; only that every script finishes and reports a well-formed figure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

CASES = {
    "bench_pipeline.py": (
        ["--values", "4000", "--workers", "2"],
        [
            r"plain executemany: +[\d,]+ values/s",
            r"pipeline, 2 worker\(s\): +[\d,]+ values/s +ratio \d+\.\d\d",
        ],
    ),
    "bench_producer.py": (
        ["--values", "20000", "--repeat", "1"],
        [r"TagBuffer\.put_many \(100/poll\): +[\d.]+ ns/value", r"ratio emit/put_many: [\d.]+x"],
    ),
    "bench_latency.py": (
        ["--seconds", "3", "--tags", "500"],
        [r"end-to-end latency: p50 [\d.]+ s +p90 [\d.]+ s +p99 [\d.]+ s"],
    ),
    "bench_endurance.py": (
        [
            "--seconds",
            "4",
            "--sample-s",
            "1",
            "--warmup-s",
            "1",
            "--no-tracemalloc",
            *("--fill", "3"),
        ],
        [
            r"resident set after warm-up: [\d.]+ \.\. [\d.]+ MiB, slope [-+][\d.]+ MiB/hour",
            r"CPU: [\d.]+ us per value \([\d.]+ % of one core after warm-up",
        ],
    ),
    "bench_replay.py": (
        ["--values", "3000", "--fill", "3"],
        [r"holds 3 rows per tag", r"replay, rows new, 1 writer\(s\): +[\d,]+ values/s"],
    ),
    "bench_prototype.py": (
        ["--seconds", "2", "--warmup-s", "1", "--fill", "3"],
        [r"CPU: [\d.]+ us per value \([\d.]+ % of one core\) +values: generated \d+, written \d+"],
    ),
    "bench_overload.py": (
        [
            *("--alone-values", "5000", "--runs", "1", "--seconds", "1", "--warmup-s", "0.5"),
            *("--tags", "300", "--fill", "20"),
            *("--sweep", "--plot", "overload.png"),
        ],
        [
            r"sink alone \(pipeline, 5,000 values\): +[\d,]+ values/s, CPU \d+% of one core",
            r"alone before +[\d,]+/s after +[\d,]+/s",
            r"ratio \d+\.\d\d .* counts match",
            r"at 3x over 1 runs: .* median \d+\.\d\d",
        ],
    ),
    "bench_table_state.py": (
        ["--tags", "300", "--rows-per-tag", "40"],
        [r"rows per tag +0 to +20: +[\d,]+ values/s", r"rows per tag +20 to +40: +[\d,]+ values/s"],
    ),
    "bench_cpu_sharing.py": (
        ["--rows", "5000"],
        [
            r"beside a process spinning in Python +[\d.]+ s +\d\.\d\d",
            r"effective CPUs with both busy: \d\.\d\d \(of \d+\)",
        ],
    ),
    "bench_oracle_sink.py": (["--batches", "4", "--repeat", "1"], [r"rows/s"]),
    "bench_wal.py": (
        ["--values", "7000", "--seconds", "1", "--fsyncs", "5"],
        [
            r"log on \(interval\): +[\d,]+ values/s +ratio on/off \d+\.\d\d",
            r"log interval +CPU +[\d.]+ us/value +[\d.]+ % of one core",
            r"append \+ fdatasync per poll .*p99 [\d.]+ ms",
        ],
    ),
    "bench_wal_store.py": (
        ["--batches", "30", "--repeat", "1"],
        [r"\| segment files \| interval \| [\d.]+ \| [\d.]+ \| 1\.00x \|", r"\| SQLite \| always \|"],
    ),
}


MQTT_CASES = {
    "bench_mqtt.py": (
        ["--values", "3000"],
        [
            r"direct \(DataQueue\): +[\d,]+ values/s",
            r"MQTT, QoS 1, ack after accept: +[\d,]+ values/s +ratio \d+\.\d\d",
        ],
    ),
}


POSTGRES_CASES = {
    "bench_pipeline.py": (
        ["--sink", "postgresql", "--values", "4000", "--workers", "2"],
        [r"plain COPY: +[\d,]+ values/s", r"pipeline, 2 worker\(s\): +[\d,]+ values/s +ratio"],
    ),
    "bench_latency.py": (
        ["--sink", "postgresql", "--seconds", "3", "--tags", "500"],
        [r"end-to-end latency: p50"],
    ),
    "bench_overload.py": (
        [
            *("--sink", "postgresql", "--alone-values", "5000", "--runs", "1", "--seconds", "1"),
            *("--tags", "300", "--fill", "20"),
            *("--sweep", "--plot", "overload.png"),
        ],
        [r"ratio \d+\.\d\d .* counts match"],
    ),
    "bench_replay.py": (
        ["--sink", "postgresql", "--values", "3000", "--workers", "2", "--fill", "3"],
        [r"plain COPY: +[\d,]+ values/s", r"replay, rows new, 2 writer\(s\): +[\d,]+ values/s"],
    ),
    "bench_mqtt.py": (
        ["--sink", "postgresql", "--values", "3000"],
        [r"MQTT, QoS 1, ack after accept: +[\d,]+ values/s +ratio \d+\.\d\d"],
    ),
    "bench_table_state.py": (
        ["--sink", "postgresql", "--tags", "300", "--rows-per-tag", "20"],
        [r"rows per tag +0 to +20: +[\d,]+ values/s"],
    ),
    "bench_postgres_sink.py": (
        ["--values", "2000", "--repeat", "1"],
        [r"\| sink \| [\d,]+ \| [\d.]+ ms \| 1.00x \|"],
    ),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_script_runs_and_reports(script: str, tmp_path: Path) -> None:
    run_script(script, *CASES[script], tmp_path)


@pytest.mark.parametrize("script", sorted(MQTT_CASES))
def test_mqtt_benchmark_script_runs_and_reports(script: str, tmp_path: Path, mqtt_broker: object) -> None:
    run_script(script, *MQTT_CASES[script], tmp_path)


@pytest.mark.postgres
@pytest.mark.parametrize("script", sorted(POSTGRES_CASES))
def test_postgresql_benchmark_script_runs_and_reports(
    script: str, tmp_path: Path, postgres_server: object
) -> None:
    run_script(script, *POSTGRES_CASES[script], tmp_path)


def test_profile_summary_gives_each_thread_its_share(tmp_path: Path) -> None:
    profile = tmp_path / "raw.txt"
    profile.write_text(
        "thread (11): writer-1;_run_worker (collector/writer.py:10);write (collector/sinks/sqlite.py:5) 3\n"
        "thread (12): intake;_run (collector/sources/intake.py:3);submit (collector/sources/intake.py:7) 1\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "profile_threads.py"), str(profile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert re.search(r"75\.0%  writer-1\n +25\.0%  intake", done.stdout), done.stdout
    assert re.search(r"75\.0%  write \(collector/sinks/sqlite\.py\)", done.stdout), done.stdout


def run_script(script: str, args: list[str], patterns: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("machine: "), done.stdout[:200]
    for pattern in patterns:
        assert re.search(pattern, done.stdout), f"{pattern!r} not in:\n{done.stdout}"
