"""Shared helpers for the benchmark scripts: the machine they ran on, and test data."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime, timedelta

from collector.model import TagValue


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    python = sys.version.split()[0]
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), Python {python}"


def polls(count: int, tags_per_poll: int = 100, start: datetime | None = None) -> list[list[TagValue]]:
    """``count`` polls of ``tags_per_poll`` values sharing one timestamp each, as polls arrive."""
    t0 = start or datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for p in range(count):
        stamp = t0 + timedelta(milliseconds=p)
        out.append(
            [TagValue(f"G{p % 10:02d}.T{t:04d}", float(t) + p * 0.001, stamp) for t in range(tags_per_poll)]
        )
    return out
