"""Where a py-spy profile's samples went, by thread and by function.

    py-spy record --threads --gil -f raw -o gil.txt -- python3 bench/bench_overload.py --runs 1 --sweep
    python3 bench/profile_threads.py gil.txt [--thread writer] [--top 20]

With ``--gil`` py-spy samples only the thread holding the GIL, so the shares are of the one core
Python code can use; with ``--idle`` instead every thread is sampled, waiting or not, so a thread's
functions show where its wall time goes (a lock, a database call, the GIL). Prints the share of
samples per thread name (numbers in names folded: ``writer-1`` and ``writer-2`` count apart, thread
ids do not), then the functions the samples were in (self) and under (inclusive).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")
_THREAD_ID = re.compile(r"\s*\(\d+\)")


def read(path: Path, only: str | None) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            frames = stack.split(";")
            thread = _THREAD_ID.sub("", frames[0]).removeprefix("thread").strip(" :") or "(unnamed)"
            if only is not None and only not in thread:
                continue
            count = int(count_text)
            total += count
            threads[thread] += count
            functions = [_LINE.sub(")", frame) for frame in frames[1:]]
            if functions:
                own[functions[-1]] += count
            for function in set(functions):
                under[function] += count
    return threads, own, under, total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path, help="py-spy record -f raw output")
    parser.add_argument("--thread", default=None, help="only threads whose name contains this")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    threads, own, under, total = read(args.profile, args.thread)
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"samples: {total}")
    for title, counts in (("thread", threads), ("self", own), ("inclusive", under)):
        print(f"--- {title}")
        for name, count in counts.most_common(args.top):
            print(f"{count / total * 100:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
