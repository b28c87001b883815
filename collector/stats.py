"""One consistent view of where every accepted value is: the accounting identity.

    accepted + recovered = written + duplicate + rejected + backed_up + overflow_dropped + lost
                           + in_buffer + in_flight

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
from collector.wal import WalStats
from collector.writer import WriterStats


@dataclass(frozen=True, slots=True)
class Snapshot:
    writer: WriterStats
    intake: IntakeStats
    backup: SpoolStats
    rejected_files: SpoolStats
    wal: WalStats | None = None
    sources: tuple[SourceStats, ...] = ()
    """The network sources (MQTT, HTTP ingest), if any."""
    taken_at: float = field(default_factory=time.time)

    @property
    def recovered(self) -> int:
        """Values the write-ahead log gave back at start: accepted by an earlier run, unfinished
        when it stopped, and put in front of new data in this one."""
        return self.wal.recovered_values if self.wal is not None else 0

    @property
    def accepted(self) -> int:
        """Readings handed to this run (recovered values entered the buffer too, but were
        accepted by the run before)."""
        w = self.writer
        return w.buffer_inserted - self.recovered + self.intake.rejected + self.intake.lost

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
        """The identity; exact in every snapshot once recovered values have all been fed."""
        return self.accepted + self.recovered == sum(self.terms().values())
