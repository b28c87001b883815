"""What a write-ahead log costs per value, by log store: the project's own segment files, SQLite as
the log store, and LMDB (when the ``lmdb`` package is installed), each at the two durability
levels that log anything.

    python3 bench/bench_wal_store.py [--batches 2000] [--batch-size 350] [--repeat 3]

Each store gets the same poll batches (350 values: the specification's 3,491 tags in 10 groups),
the same payload encoding, one append per batch, a release lagging ten batches behind (the writers),
and a checkpoint every 7 batches (0.2 s of group commit at 35 polls/s): the interval level fsyncs
there, the always level on every append. Figures are CPU and wall microseconds per value, best of
``--repeat``; the ratio is to the segment files at the same level.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, polls
from collector.model import TagValue
from collector.wal import Durability, WriteAheadLog
from collector.wal.codec import encode_values

CHECKPOINT_EVERY = 7
RELEASE_LAG = 10


class LogStore(Protocol):
    def append(self, batch: list[TagValue]) -> None: ...
    def release(self, batch_index: int, size: int) -> None: ...
    def checkpoint(self) -> None: ...
    def close(self) -> None: ...


class SegmentStore:
    def __init__(self, directory: Path, always: bool) -> None:
        durability = Durability.ALWAYS if always else Durability.INTERVAL
        self._wal = WriteAheadLog(directory, durability=durability)
        self._wal.open()

    def append(self, batch: list[TagValue]) -> None:
        self._wal.append(batch)

    def release(self, batch_index: int, size: int) -> None:
        self._wal.release(batch_index * size, size)

    def checkpoint(self) -> None:
        self._wal.checkpoint()

    def close(self) -> None:
        self._wal.close()


class SqliteStore:
    """One row per batch in a WAL-mode database; synchronous NORMAL reaches the OS per commit and
    fsyncs at its checkpoints, FULL fsyncs every commit."""

    def __init__(self, directory: Path, always: bool) -> None:
        self._db = sqlite3.connect(directory / "log.db", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if always else 'NORMAL'}")
        self._db.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, count INTEGER, payload BLOB)")
        self._always = always
        self._seq = 0
        self._mark = 0

    def append(self, batch: list[TagValue]) -> None:
        self._db.execute("INSERT INTO log VALUES (?, ?, ?)", (self._seq, len(batch), encode_values(batch)))
        self._seq += 1

    def release(self, batch_index: int, size: int) -> None:
        self._mark = batch_index + 1

    def checkpoint(self) -> None:
        self._db.execute("DELETE FROM log WHERE seq < ?", (self._mark,))
        if not self._always:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self._db.close()


class LmdbStore:
    """One key per batch; ``sync=False`` (then ``Environment.sync`` at checkpoints) or a synced commit."""

    def __init__(self, lmdb: Any, directory: Path, always: bool) -> None:
        self._env = lmdb.open(str(directory), map_size=1 << 30, sync=always, metasync=always)
        self._always = always
        self._seq = 0
        self._mark = 0
        self._deleted = 0

    def append(self, batch: list[TagValue]) -> None:
        with self._env.begin(write=True) as txn:
            txn.put(self._seq.to_bytes(8, "big"), encode_values(batch))
        self._seq += 1

    def release(self, batch_index: int, size: int) -> None:
        self._mark = batch_index + 1

    def checkpoint(self) -> None:
        with self._env.begin(write=True) as txn:
            for seq in range(self._deleted, self._mark):
                txn.delete(seq.to_bytes(8, "big"))
        self._deleted = self._mark
        if not self._always:
            self._env.sync(True)

    def close(self) -> None:
        self._env.close()


def run(make: Callable[[Path], LogStore], batches: list[list[TagValue]]) -> tuple[float, float]:
    """CPU and wall microseconds per value for one pass."""
    directory = Path(tempfile.mkdtemp(prefix="bench-wal-"))
    try:
        store = make(directory)
        size = len(batches[0])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for index, batch in enumerate(batches):
            store.append(batch)
            if index >= RELEASE_LAG:
                store.release(index - RELEASE_LAG, size)
            if index % CHECKPOINT_EVERY == 0:
                store.checkpoint()
        store.checkpoint()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        store.close()
        values = size * len(batches)
        return cpu / values * 1e6, wall / values * 1e6
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=350)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    batches = polls(args.batches, args.batch_size)
    encode_cpu = min(_encode_only(batches) for _ in range(args.repeat))
    print(f"payload encoding alone: {encode_cpu:.2f} us/value")

    try:
        lmdb: Any = importlib.import_module("lmdb")
    except ImportError:
        lmdb = None
    candidates: dict[str, Callable[[Path, bool], LogStore]] = {
        "segment files": SegmentStore,
        "SQLite": SqliteStore,
    }
    if lmdb is not None:
        candidates["LMDB"] = lambda directory, always: LmdbStore(lmdb, directory, always)
    print(f"{args.batches} batches of {args.batch_size} values; best of {args.repeat}")
    print("| store | durability | CPU us/value | wall us/value | CPU ratio to segment files |")
    print("|---|---|---|---|---|")
    for always in (False, True):
        level = "always" if always else "interval"
        reference = None
        for name, build in candidates.items():
            results = [
                run(lambda d, build=build, always=always: build(d, always), batches)  # type: ignore[misc]
                for _ in range(args.repeat)
            ]
            cpu = min(r[0] for r in results)
            wall = min(r[1] for r in results)
            reference = reference or cpu
            print(f"| {name} | {level} | {cpu:.2f} | {wall:.2f} | {cpu / reference:.2f}x |")
    if lmdb is None:
        print("LMDB: not measured (pip install lmdb)")


def _encode_only(batches: list[list[TagValue]]) -> float:
    started = time.process_time()
    for batch in batches:
        encode_values(batch)
    return (time.process_time() - started) / (len(batches) * len(batches[0])) * 1e6


if __name__ == "__main__":
    main()
