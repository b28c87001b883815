"""The write-ahead log: the crash record of the values the service holds in memory.

``framing`` (records and segments as bytes), ``codec`` (a poll batch as a payload), ``mark`` (the
low-water mark and its atomic record), ``segments`` (the directory: reading, repairing, deleting),
``log`` (:class:`WriteAheadLog`, the running log) and ``inspect`` (what ``collector wal`` prints).
"""

from collector.wal.log import (
    FSYNC_BUCKETS_S,
    Durability,
    RecoveryReport,
    WalInUseError,
    WalStats,
    WriteAheadLog,
)
from collector.wal.mark import LowWaterMark

__all__ = [
    "FSYNC_BUCKETS_S",
    "Durability",
    "LowWaterMark",
    "RecoveryReport",
    "WalInUseError",
    "WalStats",
    "WriteAheadLog",
]
