"""One consistent view of where every accepted value is: the accounting identity.

    accepted = written + duplicate + rejected + backed_up + overflow_dropped + lost + in_buffer + in_flight

``accepted`` counts every reading handed to the service, valid or not; ``rejected`` includes
readings refused at intake; ``lost`` counts values that no backup directory could take (it is zero
unless the disks fail). The metrics and the status API are built from this snapshot.

The writer's figures come from one snapshot taken under its lock (see
:mod:`collector.writer.ledger`). Readings refused at intake are counted by intake: they appear on
both sides of the identity (in ``accepted`` and in ``rejected`` or ``lost``), so reading them apart
from the writer's snapshot keeps the identity exact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from collector.backup import SpoolStats
from collector.sources.counters import SourceStats
from collector.sources.intake import IntakeStats
from collector.writer import WriterStats


@dataclass(frozen=True, slots=True)
class Snapshot:
    writer: WriterStats
    intake: IntakeStats
    backup: SpoolStats
    rejected_files: SpoolStats
    sources: tuple[SourceStats, ...] = ()
    """The network sources (MQTT, HTTP ingest), if any."""
    taken_at: float = field(default_factory=time.time)

    @property
    def accepted(self) -> int:
        w = self.writer
        return w.buffer_inserted + self.intake.rejected + self.intake.lost

    @property
    def rejected(self) -> int:
        return self.writer.rejected + self.intake.rejected

    @property
    def lost(self) -> int:
        return self.writer.lost + self.intake.lost

    def terms(self) -> dict[str, int]:
        """The right-hand side of the identity, term by term."""
        w = self.writer
        return {
            "written": w.written,
            "duplicate": w.duplicate,
            "rejected": self.rejected,
            "backed_up": w.backed_up,
            "overflow_dropped": w.buffer_overflow,
            "lost": self.lost,
            "in_buffer": w.buffer_size,
            "in_flight": w.in_flight,
        }

    def balanced(self) -> bool:
        return self.accepted == sum(self.terms().values())
