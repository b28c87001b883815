"""The status document (``GET /api/v1/status``) and the alerts it shows, built from plain data.

Everything here is a pure function of a snapshot, the backup inventory, the rolling window and the
recent growth of the trouble counters, so it is tested without a server or a clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collector.api.sources import source_section
from collector.backup import BACKUP_PREFIX, REJECTED_PREFIX
from collector.circuit import CircuitState
from collector.inventory import Inventory
from collector.sources.counters import SourceState
from collector.stats import Snapshot
from collector.telemetry.disk import DiskReading
from collector.telemetry.wal_metrics import wal_status
from collector.telemetry.window import WindowSummary
from collector.wal import WalStats

UTILIZATION_WARNING = 0.8
"""US2-4: the buffer should never exceed 80 % of its capacity."""
UTILIZATION_FULL = 0.9
"""The default spill level (``buffer.spill_ratio``): the buffer counts as full from there, as values
are being moved to backup or discarded. The service passes the configured level."""
LATENCY_LIMIT_S = 2.0
"""SC-002: average write latency under 2 s."""
SUCCESS_RATE_MIN = 0.999
"""SC-007: 99.9 % of writes succeed."""
DISK_AVAIL_CRITICAL = 0.05
"""Free share of a backup file system below which an outage would soon lose values."""
RUNBOOK = "/runbook"
"""Where the collector serves docs/runbook.md; each alert links to its section."""


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    version: str
    sink: str
    table: str
    source: str
    started_at: float | None
    state: str
    """``starting``, ``running`` or ``stopping``."""
    database: str
    """Where the sink writes, without credentials: the SQLite file or ``host:port/database``."""
    backup_dir: str
    fallback_dir: str | None
    """Both absolute: relative paths in the configuration are resolved from the working directory."""


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    severity: str
    """``critical``, ``warning`` or ``info``."""
    summary: str

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "severity": self.severity,
            "summary": self.summary,
            "runbook": f"{RUNBOOK}#{self.name.lower()}",
        }


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


def _iso_datetime(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="microseconds")


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def active_alerts(
    snapshot: Snapshot,
    inventory: Inventory,
    window: WindowSummary,
    recent: Mapping[str, int],
    sink_ok: bool,
    *,
    spill_ratio: float = UTILIZATION_FULL,
    disks: Sequence[DiskReading] = (),
    history_s: float | None = None,
) -> list[Alert]:
    """The conditions an operator must see now, most severe first. Names match the Prometheus
    alert rules, and each has a section in the runbook. Unlike the rules, which wait for their
    ``for:`` duration before firing, these show a condition the moment it holds.

    ``recent`` is how much each of :func:`~collector.telemetry.trouble_counters` grew over the last
    ``history_s`` seconds (None while the service has run for less than that: a stalled intake or
    stalled writes are judged only over a full span)."""
    w = snapshot.writer
    utilization = w.buffer_size / w.buffer_capacity if w.buffer_capacity else 0.0
    circuit_open = w.circuit.state is CircuitState.OPEN
    permanent = circuit_open and w.circuit.permanent
    database_down = circuit_open or not sink_ok
    minutes = round(window.window_s / 60)
    alerts: list[Alert] = []
    spilling = recent.get("spilled", 0) > 0 or recent.get("overflow", 0) > 0
    if database_down and (utilization >= spill_ratio or spilling):
        alerts.append(
            Alert(
                "CollectorBufferFullDatabaseDown",
                "critical",
                f"buffer {utilization:.0%} full (spill level {spill_ratio:.0%}) while the database is"
                f" down; {w.spilled} values spilled to backup and {w.buffer_overflow} discarded so far",
            )
        )
    if recent.get("lost", 0):
        alerts.append(
            Alert(
                "CollectorValuesLost",
                "critical",
                f"{recent['lost']} values lost in the last {minutes} min:"
                " no backup directory could take them",
            )
        )
    if recent.get("overflow", 0):
        alerts.append(
            Alert(
                "CollectorBufferOverflow",
                "critical",
                f"{recent['overflow']} values discarded by buffer overflow in the last {minutes} min"
                f" ({w.buffer_overflow} since start)",
            )
        )
    if permanent:
        alerts.append(
            Alert(
                "CollectorDatabasePermanentError",
                "critical",
                f"the database refuses writes for a reason retrying cannot fix: {w.circuit.reason}",
            )
        )
    elif database_down:
        reason = w.circuit.reason or w.last_error or "the database has not answered yet"
        state = "circuit open" if circuit_open else "write failing"
        alerts.append(Alert("CollectorDatabaseDown", "critical", f"database unavailable ({state}): {reason}"))
    broker_lost = [s for s in snapshot.sources if s.kind == "mqtt" and s.state is SourceState.DISCONNECTED]
    for source in broker_lost:
        alerts.append(
            Alert(
                "CollectorSourceDisconnected",
                "critical",
                f"not connected to the MQTT broker {source.endpoint}: {source.last_error or 'reconnecting'};"
                " messages wait at the broker meanwhile",
            )
        )
    if history_s is not None and recent.get("accepted", 0) == 0 and not broker_lost:
        alerts.append(
            Alert(
                "CollectorIntakeStalled",
                "critical",
                f"no values accepted in the last {round(history_s / 60)} min: the polling engine"
                " or the source has stopped",
            )
        )
    stalled_since = w.last_success_at if w.last_success_at is not None else None
    if (
        history_s is not None
        and not database_down
        and recent.get("accepted", 0) > 0
        and (stalled_since is None or snapshot.taken_at - stalled_since > history_s)
    ):
        alerts.append(
            Alert(
                "CollectorWritesStalled",
                "critical",
                f"values arrive but no batch was committed in the last {round(history_s / 60)} min,"
                " and no write failed: the writers are stuck",
            )
        )
    if recent.get("backup_failures", 0):
        alerts.append(
            Alert(
                "CollectorBackupWriteFailing",
                "critical",
                f"{recent['backup_failures']} backup file writes failed in the last {minutes} min",
            )
        )
    alerts.extend(_wal_alerts(snapshot.wal))
    for disk in disks:
        if disk.avail_ratio < DISK_AVAIL_CRITICAL:
            alerts.append(
                Alert(
                    "CollectorBackupDiskAlmostFull",
                    "critical",
                    f"{disk.avail_ratio:.1%} free on the file system of the {disk.directory} backup"
                    f" directory {disk.path}: an outage now would lose values",
                )
            )
    if snapshot.backup.using_fallback or snapshot.rejected_files.using_fallback:
        alerts.append(
            Alert(
                "CollectorBackupFallbackInUse",
                "warning",
                "files are being written to the fallback directory: the backup directory failed",
            )
        )
    if utilization > UTILIZATION_WARNING and not database_down:
        alerts.append(
            Alert(
                "CollectorBufferHigh",
                "warning",
                f"buffer at {utilization:.0%} of {w.buffer_capacity}: the writers are not keeping up",
            )
        )
    latency = window.average_write_latency_s
    if latency is not None and latency > LATENCY_LIMIT_S:
        alerts.append(
            Alert(
                "CollectorWriteLatencyHigh",
                "warning",
                f"average write latency {latency:.2f} s over the last {minutes} min"
                f" (committed batches; limit {LATENCY_LIMIT_S:g} s)",
            )
        )
    rate = window.success_rate
    outage = database_down or recent.get("trips", 0) > 0
    if rate is not None and rate < SUCCESS_RATE_MIN and not outage:
        alerts.append(
            Alert(
                "CollectorWriteSuccessRateLow",
                "warning",
                f"write success rate {rate:.2%} over the last {minutes} min (target {SUCCESS_RATE_MIN:.1%})",
            )
        )
    waiting = inventory.backup_files
    if waiting and not database_down:
        alerts.append(
            Alert(
                "CollectorBackupFilesWaiting",
                "warning",
                f"{waiting} backup files ({inventory.backup_bytes} bytes) wait for manual recovery",
            )
        )
    return alerts


def _wal_alerts(wal: WalStats | None) -> list[Alert]:
    """The write-ahead log's conditions, as the CollectorWal* alert rules see them."""
    alerts: list[Alert] = []
    if wal is not None and not wal.writable:
        alerts.append(
            Alert(
                "CollectorWalNotWritable",
                "critical",
                f"write-ahead log {wal.directory} cannot be written: running memory-only"
                f" ({wal.unlogged_values} values not logged so far)",
            )
        )
    if wal is not None and wal.full:
        alerts.append(
            Alert("CollectorWalFull", "warning", f"write-ahead log at its size cap ({wal.bytes} bytes)")
        )
    if wal is not None and wal.quarantine_files:
        alerts.append(
            Alert(
                "CollectorWalDamaged",
                "warning",
                f"{wal.quarantine_files} damaged parts of the write-ahead log in quarantine/"
                f" ({wal.quarantined_values} unfinished values lost at the last start)",
            )
        )
    return alerts


def buffer_status(alerts: list[Alert]) -> str:
    """``critical``, ``warning`` or ``ok``: the worst alert about the buffer (US3-4)."""
    names = {a.name: a.severity for a in alerts}
    if "CollectorBufferFullDatabaseDown" in names or "CollectorBufferOverflow" in names:
        return "critical"
    if "CollectorBufferHigh" in names:
        return "warning"
    return "ok"


def build_status(
    *,
    snapshot: Snapshot,
    inventory: Inventory,
    window: WindowSummary,
    recent: Mapping[str, int],
    sink_ok: bool,
    service: ServiceInfo,
    spill_ratio: float = UTILIZATION_FULL,
    disks: Sequence[DiskReading] = (),
    history_s: float | None = None,
) -> dict[str, Any]:
    """The JSON document of ``GET /api/v1/status``; its schema is in the OpenAPI document."""
    w = snapshot.writer
    alerts = active_alerts(
        snapshot,
        inventory,
        window,
        recent,
        sink_ok,
        spill_ratio=spill_ratio,
        disks=disks,
        history_s=history_s,
    )
    circuit = w.circuit
    terms = snapshot.terms()
    successful, failed = w.batches_written, w.attempts_failed
    now = snapshot.taken_at
    return {
        "service": {
            "version": service.version,
            "state": service.state,
            "started_at": _iso(service.started_at),
            "uptime_s": _round(now - service.started_at, 3) if service.started_at is not None else None,
            "sink": service.sink,
            "database": service.database,
            "table": service.table,
            "source": service.source,
            "backup_dir": service.backup_dir,
            "fallback_dir": service.fallback_dir,
        },
        "buffer": {
            "size": w.buffer_size,
            "capacity": w.buffer_capacity,
            "utilization": _round(_ratio(w.buffer_size, w.buffer_capacity) or 0.0),
            "high_water_mark": w.buffer_high_water,
            "inserted": w.buffer_inserted,
            "removed": w.buffer_removed,
            "overflow": w.buffer_overflow,
            "overflow_ratio": _round(_ratio(w.buffer_overflow, w.buffer_inserted) or 0.0),
            "overflow_recent": recent.get("overflow", 0),
            "spilled": w.spilled,
            "spill_ratio": _round(spill_ratio),
            "status": buffer_status(alerts),
        },
        "writer": {
            "successful_writes": successful,
            "failed_writes": failed,
            "success_rate": _round(_ratio(successful, successful + failed)),
            "batches_backed_up": w.batches_backed_up,
            "retries": w.retries,
            "retry_pending": w.retry_pending,
            "in_flight": w.in_flight,
            "sink_up": sink_ok and circuit.state is CircuitState.CLOSED,
            "last_success_at": _iso(w.last_success_at),
            "last_error": w.last_error or None,
            "last_error_at": _iso(w.last_error_at),
            "failing_since": _iso(w.failing_since),
            "rolling": {
                "window_s": window.window_s,
                "successful_writes": window.successful_writes,
                "failed_writes": window.failed_writes,
                "success_rate": _round(window.success_rate),
                "average_batch_size": _round(window.average_batch_size, 1),
                "average_write_latency_s": _round(window.average_write_latency_s),
            },
        },
        "values": {
            "accepted": snapshot.accepted,
            "written": terms["written"],
            "duplicate": terms["duplicate"],
            "rejected": terms["rejected"],
            "backed_up": terms["backed_up"],
            "overflow_dropped": terms["overflow_dropped"],
            "lost": terms["lost"],
            "in_buffer": terms["in_buffer"],
            "in_flight": terms["in_flight"],
            "recovered": snapshot.recovered,
            "balanced": snapshot.balanced(),
        },
        "backups": {
            "files": inventory.backup_files,
            "bytes": inventory.backup_bytes,
            "rejected_files": inventory.rejected_files,
            "rejected_bytes": inventory.rejected_bytes,
            "rows": inventory.backup_rows,
            "rejected_rows": inventory.rejected_rows,
            "rows_from": _iso_datetime(inventory.time_range(BACKUP_PREFIX)[0]),
            "rows_to": _iso_datetime(inventory.time_range(BACKUP_PREFIX)[1]),
            "rows_written": snapshot.backup.rows,
            "failures": snapshot.backup.failures,
            "fallback_active": snapshot.backup.using_fallback,
            "oldest_file": _iso(min((f.modified for f in inventory.of_kind(BACKUP_PREFIX)), default=None)),
            "rejected_rows_written": snapshot.rejected_files.rows,
            "rejected_failures": snapshot.rejected_files.failures,
            "newest_rejected_file": _iso(
                max((f.modified for f in inventory.of_kind(REJECTED_PREFIX)), default=None)
            ),
            "disks": [
                {
                    "directory": d.directory,
                    "path": d.path,
                    "avail_bytes": d.avail_bytes,
                    "size_bytes": d.size_bytes,
                }
                for d in disks
            ],
        },
        "wal": wal_status(snapshot.wal),
        "circuit": {
            "state": circuit.state.value,
            # While writes fail and the retries run, the circuit is still closed, but the reason
            # it may open is already known: say it.
            "reason": circuit.reason or (w.last_error if w.failing_since is not None else "") or None,
            "permanent": circuit.permanent,
            "opened_at": _iso(circuit.opened_at),
            "trips": circuit.trips,
            "probes": circuit.probes,
        },
        "source": source_section(service.source, snapshot.sources),
        "alerts": [a.as_dict() for a in alerts],
        "taken_at": _iso(now),
    }
