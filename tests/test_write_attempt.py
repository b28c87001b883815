"""One attempt's rules, shared by the writer and replay; and the attempt number a sink is told."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.model import TagValue
from collector.recovery.replay import Outcome, Replayer
from collector.retry import RetryPolicy
from collector.sinks.base import WRITE_ATTEMPT, PermanentSinkError, RowError, TransientSinkError, WriteResult
from collector.write_attempt import MISCOUNT_CODE, write_once
from tests.recovery_support import sample_values, write_backup
from tests.writer_rig import WriterRig


class FlakySink:
    """Fails the first ``failures`` writes with a connection-class error, then stores the batch."""

    system_name = "sqlite"
    table = "TAG_DATA"

    def __init__(self, failures: int) -> None:
        self._failures = failures
        self.attempts_seen: list[int] = []
        self.stored: list[TagValue] = []
        self.done = threading.Event()

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        self.attempts_seen.append(WRITE_ATTEMPT.get())
        if len(self.attempts_seen) <= self._failures:
            raise TransientSinkError("connection reset", code="DPY-4011")
        self.stored.extend(batch)
        self.done.set()
        return WriteResult(written=len(batch))

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


def test_each_attempt_of_a_batch_is_numbered_for_the_sink(tmp_path: Path) -> None:
    sink = FlakySink(failures=2)
    rig = WriterRig(
        tmp_path, sink, batch_size=3, flush_interval_s=0.01, retry=RetryPolicy.of(3, [0.01]), workers=1
    )
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    rig.buffer.put_many([TagValue(f"T{i}", float(i), stamp) for i in range(3)])
    rig.start()
    try:
        assert sink.done.wait(10)
    finally:
        rig.stop()
    assert sink.attempts_seen == [1, 2, 3]
    assert len(sink.stored) == 3
    # Outside a write the sink sees the default: a first attempt.
    assert WRITE_ATTEMPT.get() == 1


class _Answers:
    """A sink that answers each write from a script: an exception to raise or a result to return."""

    system_name = "sqlite"
    table = "TAG_DATA"

    def __init__(self, *answers: Exception | WriteResult) -> None:
        self._answers = list(answers)

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        answer = self._answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


BATCH = [TagValue(f"T{i}", float(i), datetime(2026, 1, 1, tzinfo=UTC)) for i in range(3)]


def test_an_unclassified_exception_is_transient_and_keeps_its_cause() -> None:
    bug = KeyError("column")
    done = write_once(_Answers(bug), BATCH)
    assert done.result is None and done.error is not None
    assert done.error.transient
    assert done.error.__cause__ is bug
    assert "KeyError" in done.error.describe()


def test_a_classified_error_is_passed_on_as_it_is() -> None:
    error = PermanentSinkError("no such table", code="NO_TABLE")
    assert write_once(_Answers(error), BATCH).error is error


@pytest.mark.parametrize(
    "result",
    [
        WriteResult(written=2),  # a row missing
        WriteResult(written=3, duplicates=1),  # a row counted twice
        WriteResult(written=1, rejected=[RowError(0, "X", "bad"), RowError(0, "X", "bad")]),  # same row
        WriteResult(written=2, rejected=[RowError(3, "X", "bad")]),  # a row the batch does not have
    ],
)
def test_a_result_that_does_not_name_every_row_once_is_a_transient_miscount(result: WriteResult) -> None:
    done = write_once(_Answers(result), BATCH)
    assert done.result is None and done.error is not None
    assert done.error.transient and done.error.code == MISCOUNT_CODE


def test_a_result_that_names_every_row_once_is_trusted_and_timed() -> None:
    result = WriteResult(written=1, duplicates=1, rejected=[RowError(2, "X", "bad")])
    ticks = iter([10.0, 10.25])
    done = write_once(_Answers(result), BATCH, attempt=2, clock=lambda: next(ticks))
    assert done.ok and done.result is result and done.error is None
    assert done.duration_s == 0.25


def test_replay_follows_the_same_rules_and_gives_up_on_a_bug_after_the_retries(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    path = write_backup(backup, sample_values(5))
    sleeps: list[float] = []
    replayer = Replayer(
        lambda: _Answers(*[RuntimeError("driver bug")] * 4),
        retry=RetryPolicy(3, (1.0, 2.0, 4.0)),
        sleep=sleeps.append,
    )
    report = replayer.run([path])
    assert report.files[0].outcome is Outcome.DATABASE
    assert "RuntimeError: driver bug" in report.files[0].detail
    assert sleeps == [1.0, 2.0, 4.0]
    assert path.exists()
