"""WriteAheadLog: the crash record of every value the service holds in memory.

Every poll batch is appended as one record before its values become visible to the writers; a value
leaves the log when the writers report its fate final and durable (:meth:`WriteAheadLog.release`).
Values are identified by *position*: the order in which the service admits them, recovered values
first, then new ones, the same order in which the ring buffer holds them. The log maps positions to
its own sequence numbers, which keep rising across restarts.

One background thread (``wal-sync``) does everything slow: the group-commit fsync of the segment
(``durability="interval"``), closing full segments, recording the low-water mark and deleting the
segments it covers, and retrying a directory that failed. The append path is an encode, a ``write``
and, with ``durability="always"``, an ``fdatasync``.

The log never stops intake: when its directory cannot be written, or its size cap is reached, the
values are still accepted, counted as *unlogged*, and the service runs memory-only (loudly) until
the directory works again or released values make room.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from collector.file_safety import fsync_directory
from collector.model import TagValue
from collector.wal.codec import PayloadError, decode_values, encode_values
from collector.wal.framing import SEGMENT_HEADER, Damage, DamageKind, RecordRef, frame, payload_of
from collector.wal.mark import LOG_DIR_MODE, LOG_FILE_MODE, LowWaterMark, record_mark
from collector.wal.segments import (
    LOCK_FILE,
    QUARANTINE_DIR,
    LogScan,
    RepairSummary,
    _describe_damage,
    repair,
    scan_directory,
    segment_name,
)

log = logging.getLogger("collector.wal")

FSYNC_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
_MARK_EVERY_S = 1.0
"""Besides whenever a segment can be deleted, the mark is recorded this often while it moves, so a
restart replays (as counted duplicates) at most about this much already-finished data."""

_fdatasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class Durability(StrEnum):
    """How far an append has gone when the value counts as accepted."""

    OFF = "off"
    """No log: memory only, as without this module."""
    INTERVAL = "interval"
    """Written to the operating system (survives SIGKILL and OOM); fsynced every ``fsync_interval_s``."""
    ALWAYS = "always"
    """Fsynced before the value counts as accepted (survives a power cut)."""


class WalInUseError(RuntimeError):
    """Another process holds the log directory; two collectors must never share one."""


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What :meth:`WriteAheadLog.open` found."""

    mark: int
    next_seq: int
    pending_values: int
    pending_records: int
    segments: int
    repair: RepairSummary
    mark_problem: str | None


@dataclass(frozen=True, slots=True)
class WalStats:
    """One reading of the log's state and counters (for metrics and the status API)."""

    durability: str
    directory: str
    writable: bool
    full: bool
    bytes: int
    segments: int
    mark: int
    recorded_mark: int
    next_seq: int
    appended_records: int
    appended_values: int
    unlogged_values: int
    recovered_values: int
    quarantined_ranges: int
    quarantined_bytes: int
    quarantined_values: int
    torn_cut_bytes: int
    write_failures: int
    fsyncs: int
    fsync_seconds_sum: float
    fsync_buckets: tuple[int, ...]
    """Cumulative counts per bound of :data:`FSYNC_BUCKETS_S` (Prometheus histogram order)."""
    quarantine_files: int
    """Files waiting in ``quarantine/`` for an operator to look at (and delete)."""

    @property
    def unfinished(self) -> int:
        """Values admitted and not yet released (logged or not)."""
        return self.next_seq - self.mark


@dataclass(slots=True)
class _Segment:
    first_seq: int
    path: Path
    size: int


class WriteAheadLog:
    """Segment files with checksummed records, a recorded low-water mark, recovery; see the module doc."""

    def __init__(
        self,
        directory: Path | str,
        *,
        durability: Durability | str = Durability.INTERVAL,
        fsync_interval_s: float = 0.2,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        retry_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.durability = Durability(durability)
        if self.durability is Durability.OFF:
            raise ValueError("durability 'off' means no log: do not build one")
        if fsync_interval_s <= 0:
            raise ValueError(f"fsync_interval_s must be positive, got {fsync_interval_s}")
        if segment_bytes < 4096:
            raise ValueError(f"segment_bytes must be at least 4096, got {segment_bytes}")
        if max_bytes < 2 * segment_bytes:
            raise ValueError(f"max_bytes must be at least twice segment_bytes ({2 * segment_bytes})")
        self.directory = Path(directory)
        self._fsync_interval = fsync_interval_s
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self._retry_interval = retry_interval_s
        self._clock = clock

        # Three locks, always taken in this order and never while waiting on another thread:
        # ``_lock`` guards the active segment and its I/O, ``_pos_lock`` the position-to-sequence
        # mapping (so a release never waits behind an fsync), ``_mark_lock`` the low-water mark.
        self._lock = threading.Lock()
        self._pos_lock = threading.Lock()
        self._mark_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._opened = False
        self._closed = False
        self._writable = True
        self._full = False
        self._retry_at = 0.0
        self._fd: int | None = None
        self._active: _Segment | None = None
        self._closed_segments: list[_Segment] = []
        self._retired: list[int] = []
        self._dirty = False
        self._dir_dirty = False
        self._live_bytes = 0

        self._next_seq = 0
        self._admitted = 0
        self._floor = 0
        self._tracker = LowWaterMark(0)
        self._recorded_mark = 0
        self._mark_recorded_at = 0.0
        # Positions of recovered values: parallel lists of (first position, first seq) per record.
        self._recovered_pos: list[int] = []
        self._recovered_seq: list[int] = []
        self._new_pos = 0  # first position of a value appended in this run
        self._new_seq = 0  # its sequence number
        self._pending: list[tuple[Path, RecordRef, int]] = []
        self._recovering = False

        self._appended_records = 0
        self._appended_values = 0
        self._unlogged = 0
        self._recovered = 0
        self._repair = RepairSummary(0, 0, 0, 0, 0)
        self._write_failures = 0
        self._fsyncs = 0
        self._fsync_sum = 0.0
        self._fsync_counts = [0] * len(FSYNC_BUCKETS_S)

        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ opening and recovery

    def open(self) -> RecoveryReport:
        """Lock the directory, read and repair the log, and get ready to feed back what it holds.

        Damage never makes this fail; a directory that cannot be used drops the log to memory-only
        (CRITICAL). Raises :class:`WalInUseError` only when another process holds the directory.
        """
        if self._opened:
            raise RuntimeError("log already opened")
        self._opened = True
        try:
            self.directory.mkdir(mode=LOG_DIR_MODE, parents=True, exist_ok=True)
            self._lock_directory()
            scan = scan_directory(self.directory)
            self._drop_undecodable(scan)
            summary = repair(scan)
            scan = scan_directory(self.directory)
        except WalInUseError:
            raise
        except OSError as exc:
            self._degrade("open", exc)
            # The directory was never read, so writing into it later could overwrite what it holds:
            # this run stays memory-only.
            self._retry_at = float("inf")
            return RecoveryReport(0, 0, 0, 0, 0, self._repair, None)
        if scan.mark_problem:
            log.warning("write-ahead log: %s", scan.mark_problem)
        self._repair = summary
        self._floor = scan.mark
        self._next_seq = scan.next_seq
        self._tracker = LowWaterMark(scan.mark)
        self._recorded_mark = scan.mark
        self._pending = [(segment.path, record, skip) for segment, record, skip in scan.pending()]
        self._recovering = bool(self._pending)
        self._new_seq = self._next_seq
        self._closed_segments = [_Segment(s.first_seq, s.path, s.size) for s in scan.segments]
        self._live_bytes = scan.total_bytes
        report = RecoveryReport(
            mark=scan.mark,
            next_seq=scan.next_seq,
            pending_values=sum(record.count - skip for _, record, skip in self._pending),
            pending_records=len(self._pending),
            segments=len(scan.segments),
            repair=summary,
            mark_problem=scan.mark_problem,
        )
        if report.pending_values:
            log.warning(
                "write-ahead log: %d unfinished values from before the last stop will be written "
                "before new data (mark %d, %d segments)",
                report.pending_values,
                scan.mark,
                report.segments,
            )
        return report

    def _lock_directory(self) -> None:
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, LOG_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise WalInUseError(
                f"write-ahead log directory {self.directory} is in use by another collector (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._lock_fd = fd

    @staticmethod
    def _drop_undecodable(scan: LogScan) -> None:
        """A record whose checksum matches but whose payload cannot be read is damage too."""
        found = False
        cache: dict[Path, bytes] = {}
        for segment, record, _ in list(scan.pending()):
            data = cache.get(segment.path)
            if data is None:
                data = cache.setdefault(segment.path, segment.path.read_bytes())
            try:
                decode_values(payload_of(data, record), record.count)
            except PayloadError as exc:
                log.error(
                    "write-ahead log: record at %s:%d is unreadable: %s",
                    segment.path.name,
                    record.offset,
                    exc,
                )
                segment.records.remove(record)
                segment.damage.append(Damage(record.offset, record.end, DamageKind.CORRUPT))
                segment.damage.sort(key=lambda damage: damage.offset)
                found = True
        if found:
            scan.damage = _describe_damage(scan)

    def recovered_batches(self) -> Iterator[list[TagValue]]:
        """The unfinished values from before the last stop, one record at a time, in log order.

        Feed every batch to the buffer before appending anything new: positions follow this order.
        """
        data = b""
        current: Path | None = None
        for path, record, skip in self._pending:
            try:
                if path != current:
                    data, current = path.read_bytes(), path
                values = decode_values(payload_of(data, record), record.count)[skip:]
            except (OSError, PayloadError) as exc:
                # Read and checked a moment ago; if it fails now its range is simply not admitted,
                # and the next value's release covers its sequence numbers.
                log.error("write-ahead log: could not read back %s:%d: %s", path.name, record.offset, exc)
                continue
            with self._pos_lock:
                self._recovered_pos.append(self._admitted)
                self._recovered_seq.append(record.first_seq + skip)
                self._admitted += len(values)
                self._recovered += len(values)
            yield values
        with self._lock, self._pos_lock:
            self._pending = []
            self._recovering = False
            self._new_pos = self._admitted

    # ------------------------------------------------------------------ the hot path

    def append(self, values: Sequence[TagValue]) -> None:
        """Log one poll batch (see :class:`Durability` for what has happened when this returns)."""
        count = len(values)
        if not count:
            return
        payload = encode_values(values)
        with self._lock:
            if self._recovering:
                raise RuntimeError("recovered values must all be fed before new values are appended")
            if self._closed:
                raise RuntimeError("log is closed")
            seq = self._next_seq
            self._next_seq = seq + count
            with self._pos_lock:
                self._admitted += count
            if not self._writable:
                self._unlogged += count
                return
            record = frame(seq, count, payload)
            if self._live_bytes + len(record) > self._max_bytes:
                self._unlogged += count
                if not self._full:
                    self._full = True
                    log.error(
                        "write-ahead log: size cap of %d bytes reached; new values are accepted but "
                        "not logged until released values make room",
                        self._max_bytes,
                    )
                return
            try:
                self._write_locked(seq, record)
            except OSError as exc:
                self._unlogged += count
                self._degrade("append", exc)
                return
            self._appended_records += 1
            self._appended_values += count

    def _write_locked(self, seq: int, record: bytes) -> None:
        active = self._active
        if active is None or (
            active.size + len(record) > self._segment_bytes and active.size > len(SEGMENT_HEADER)
        ):
            self._roll_locked(seq)
            active = self._active
            assert active is not None
        fd = self._fd
        assert fd is not None
        view = memoryview(record)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            # A full disk takes part of a write: cut it back so the segment stays whole.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, active.size)
            raise
        active.size += len(record)
        self._live_bytes += len(record)
        if self.durability is Durability.ALWAYS:
            self._timed_fsync(fd)
        else:
            self._dirty = True

    def _roll_locked(self, seq: int) -> None:
        """Start a new segment at ``seq``; the old one is closed by the sync thread after its fsync."""
        path = self.directory / segment_name(seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, LOG_FILE_MODE)
        try:
            os.write(fd, SEGMENT_HEADER)
        except OSError:
            os.close(fd)
            raise
        if self._fd is not None:
            self._retire_locked()
        self._fd = fd
        self._active = _Segment(seq, path, len(SEGMENT_HEADER))
        self._live_bytes += len(SEGMENT_HEADER)
        if self.durability is Durability.ALWAYS:
            self._timed_fsync(fd)
            fsync_directory(self.directory)
        else:
            self._dir_dirty = True

    def _retire_locked(self) -> None:
        if self._fd is not None:
            self._retired.append(self._fd)
            self._fd = None
        if self._active is not None:
            self._closed_segments.append(self._active)
            self._active = None

    def _timed_fsync(self, fd: int) -> None:
        started = time.perf_counter()
        _fdatasync(fd)
        elapsed = time.perf_counter() - started
        self._fsyncs += 1
        self._fsync_sum += elapsed
        index = bisect.bisect_left(FSYNC_BUCKETS_S, elapsed)
        if index < len(self._fsync_counts):
            self._fsync_counts[index] += 1

    # ------------------------------------------------------------------ release and the mark

    def _seq_of(self, position: int) -> int:
        if position >= self._new_pos and not self._recovering:
            return self._new_seq + position - self._new_pos
        index = bisect.bisect_right(self._recovered_pos, position) - 1
        return self._recovered_seq[index] + position - self._recovered_pos[index]

    def release(self, position: int, count: int) -> None:
        """Values at positions ``[position, position + count)`` have a final, durable fate.

        Each position is released exactly once. A value owns the sequence numbers between the value
        before it and itself, so ranges the log skipped (damage cut at start, records that could not
        be read back) are released with the value after them.
        """
        if count <= 0:
            return
        end = position + count
        with self._pos_lock:
            if end > self._admitted:
                raise ValueError(f"positions [{position}, {end}) were never admitted ({self._admitted})")
            low = self._floor if position == 0 else self._seq_of(position - 1) + 1
            high = self._seq_of(end - 1) + 1
        with self._mark_lock:
            self._tracker.finish(low, high)

    @property
    def admitted(self) -> int:
        """Positions handed out so far (recovered values fed plus values appended)."""
        return self._admitted

    # ------------------------------------------------------------------ the sync thread

    def start(self) -> None:
        """Start the background thread that fsyncs, records the mark and deletes covered segments."""
        if self._thread is not None:
            raise RuntimeError("log already started")
        self._thread = threading.Thread(target=self._run, name="wal-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._fsync_interval):
            try:
                self.checkpoint()
            except Exception:  # the thread must never die: intake would run without a crash record
                log.exception("write-ahead log: checkpoint failed")

    def checkpoint(self) -> None:
        """Fsync what was appended, close retired segments, record the mark, delete covered segments,
        and retry a failed directory. Runs on the sync thread; tests call it directly."""
        with self._lock:
            fd = self._fd
            dirty, self._dirty = self._dirty, False
            retired, self._retired = self._retired, []
            dir_dirty, self._dir_dirty = self._dir_dirty, False
            writable = self._writable
        try:
            if self.durability is Durability.INTERVAL:
                for old in retired:
                    self._timed_fsync(old)
                if dirty and fd is not None:
                    self._timed_fsync(fd)
                if dir_dirty:
                    fsync_directory(self.directory)
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the pages: never trust that segment again.
            with self._lock:
                self._degrade("fsync", exc)
        finally:
            for old in retired:
                with contextlib.suppress(OSError):
                    os.close(old)
        if writable:
            self._advance_mark()
        elif self._clock() >= self._retry_at:
            self._retry_directory()

    def _advance_mark(self) -> None:
        with self._mark_lock:
            mark = self._tracker.mark
        with self._lock:
            closed = list(self._closed_segments)
            active = self._active
            next_seq = self._next_seq
        now = self._clock()
        if mark > self._recorded_mark and (
            self._covered(closed, active, next_seq, mark) or now - self._mark_recorded_at >= _MARK_EVERY_S
        ):
            try:
                record_mark(self.directory, mark)
            except OSError as exc:
                with self._lock:
                    self._degrade("recording the mark", exc)
                return
            self._recorded_mark = mark
            self._mark_recorded_at = now
        # Only what the *recorded* mark covers may go: deleting first and recording after is the
        # ordering that leaves a mark pointing at a file that no longer exists after a crash.
        deletable = self._covered(closed, active, next_seq, self._recorded_mark)
        freed = 0
        for segment in deletable:
            try:
                segment.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("write-ahead log: could not delete %s: %s", segment.path, exc)
                deletable = deletable[: deletable.index(segment)]
                break
            freed += segment.size
        # Deletes need no directory fsync: a segment that reappears after a power cut is below the
        # recorded mark and is deleted again at the next start.
        with self._lock:
            gone = {id(segment) for segment in deletable}
            self._closed_segments = [s for s in self._closed_segments if id(s) not in gone]
            self._live_bytes -= freed
            if self._full and self._live_bytes < self._max_bytes * 0.9:
                self._full = False
                log.warning("write-ahead log: below its size cap again; logging resumed")
            active = self._active
            # Everything in the active segment is finished: let the next append start afresh so a
            # quiet log does not keep a growing file of finished values.
            finished = active is not None and self._next_seq <= self._recorded_mark
            if finished and active is not None and (active.size >= self._segment_bytes // 4 or self._full):
                self._retire_locked()

    @staticmethod
    def _covered(closed: list[_Segment], active: _Segment | None, next_seq: int, mark: int) -> list[_Segment]:
        """Closed segments whose every value is below ``mark`` (a segment ends where the next begins)."""
        order = [*closed, *([active] if active else [])]
        covered = []
        for index, segment in enumerate(closed):
            following = order[index + 1].first_seq if index + 1 < len(order) else next_seq
            if following > mark:
                break
            covered.append(segment)
        return covered

    def _retry_directory(self) -> None:
        with self._lock:
            try:
                self.directory.mkdir(mode=LOG_DIR_MODE, parents=True, exist_ok=True)
                self._roll_locked(self._next_seq)
                if self.durability is Durability.INTERVAL:
                    assert self._fd is not None
                    _fdatasync(self._fd)
                    fsync_directory(self.directory)
                    self._dir_dirty = False
            except OSError as exc:
                self._retry_at = self._clock() + self._retry_interval
                log.debug("write-ahead log: directory still unusable: %s", exc)
                return
            self._writable = True
        log.warning("write-ahead log: directory %s is writable again; logging resumed", self.directory)

    def _degrade(self, action: str, exc: OSError) -> None:
        """Called with ``_lock`` held (or before anything runs). Never raises."""
        self._write_failures += 1
        self._retry_at = self._clock() + self._retry_interval
        if self._fd is not None:
            self._retired.append(self._fd)
            self._fd = None
        if self._active is not None:
            self._closed_segments.append(self._active)
            self._active = None
        if self._writable:
            self._writable = False
            log.critical(
                "write-ahead log: %s failed in %s (%s); continuing memory-only: a crash now loses the "
                "values held in memory. Retrying every %.0f s",
                action,
                self.directory,
                exc,
                self._retry_interval,
            )

    # ------------------------------------------------------------------ closing and reading state

    def close(self) -> None:
        """Stop the sync thread, fsync, record the mark; if every value is finished, empty the log."""
        if self._closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._closed = True
        try:
            self.checkpoint()
            with self._mark_lock:
                mark = self._tracker.mark
            with self._lock:
                done = mark >= self._next_seq and not self._recovering and self._retry_at != float("inf")
                self._retire_locked()
            self.checkpoint()
            if done and self._writable:
                record_mark(self.directory, mark)
                self._recorded_mark = mark
                for segment in self._closed_segments:
                    segment.path.unlink(missing_ok=True)
                self._closed_segments = []
                self._live_bytes = 0
        except OSError as exc:
            log.error("write-ahead log: closing %s: %s", self.directory, exc)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def stats(self) -> WalStats:
        try:
            quarantine_files = len(os.listdir(self.directory / QUARANTINE_DIR))
        except OSError:
            quarantine_files = 0
        with self._mark_lock:
            mark = self._tracker.mark
        with self._lock, self._pos_lock:
            segments = len(self._closed_segments) + (1 if self._active else 0)
            cumulative = []
            running = 0
            for count in self._fsync_counts:
                running += count
                cumulative.append(running)
            return WalStats(
                durability=self.durability.value,
                directory=str(self.directory),
                writable=self._writable,
                full=self._full,
                bytes=self._live_bytes,
                segments=segments,
                mark=mark,
                recorded_mark=self._recorded_mark,
                next_seq=self._next_seq,
                appended_records=self._appended_records,
                appended_values=self._appended_values,
                unlogged_values=self._unlogged,
                recovered_values=self._recovered,
                quarantined_ranges=self._repair.quarantined_ranges,
                quarantined_bytes=self._repair.quarantined_bytes,
                quarantined_values=self._repair.quarantined_values,
                torn_cut_bytes=self._repair.torn_cut_bytes,
                write_failures=self._write_failures,
                fsyncs=self._fsyncs,
                fsync_seconds_sum=self._fsync_sum,
                fsync_buckets=tuple(cumulative),
                quarantine_files=quarantine_files,
            )
