"""Fewer cyclic collections while a bulk job runs, and the collector's settings given back after."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path

import pytest

from collector.interpreter import BULK_FIRST_THRESHOLD, fewer_collections
from collector.model import TagValue
from collector.recovery.replay import Outcome, Replayer
from collector.sinks.base import WriteResult
from collector.sinks.sqlite import SqliteSink
from tests.fakes import WrappedSink
from tests.recovery_support import sample_values, write_backup

pytestmark = pytest.mark.usefixtures("default_collector")


def test_the_first_threshold_is_raised_inside_and_restored_after() -> None:
    with fewer_collections():
        assert gc.get_threshold() == (BULK_FIRST_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_the_thresholds_are_restored_when_the_job_fails() -> None:
    with pytest.raises(KeyboardInterrupt), fewer_collections():
        raise KeyboardInterrupt
    assert gc.get_threshold() == (700, 10, 10)


def test_an_application_that_collects_less_often_or_never_keeps_its_choice() -> None:
    gc.set_threshold(200_000, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == (200_000, 10, 10)
    assert gc.get_threshold() == (200_000, 10, 10)
    gc.disable()
    with fewer_collections():
        assert gc.get_threshold() == (200_000, 10, 10) and not gc.isenabled()


class ThresholdSeen(WrappedSink):
    """A real SQLite sink that notes the first threshold each batch is written under."""

    def __init__(self, inner: SqliteSink) -> None:
        super().__init__(inner)
        self.seen: set[int] = set()

    def write(self, batch: Sequence[TagValue]) -> WriteResult:
        self.seen.add(gc.get_threshold()[0])
        return self.inner.write(batch)


def test_a_replay_runs_with_fewer_collections_and_gives_the_setting_back(tmp_path: Path) -> None:
    path = write_backup(tmp_path / "backup", sample_values(120))
    sink = ThresholdSeen(SqliteSink(tmp_path / "tags.db"))
    (done,) = Replayer(lambda: sink, batch_size=50).run([path]).files
    assert (done.outcome, done.written) == (Outcome.REPLAYED, 120)
    assert sink.seen == {BULK_FIRST_THRESHOLD}
    assert gc.get_threshold() == (700, 10, 10)
