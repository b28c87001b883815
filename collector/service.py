"""The service: builds every part from the validated configuration and runs their lifecycle.

Start order: sink check, writer, intake, source. Stop order (one order, safe to call twice): stop
the source, let intake hand over what is already queued, close the buffer and let the writers
drain it within ``writer.shutdown_timeout_s`` (what is left goes to backup), close the sink and the
CSV files, and log the pending count and where everything went. Beside the pipeline run its
components: telemetry (metrics, traces) and the HTTP API, started after the pipeline and stopped
once it has drained, before the sink closes (so the drain is visible).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol

from collector import __version__
from collector.api import ApiApp, ApiServer, ServerLimits, ServiceInfo
from collector.api.ingest import IngestEndpoint
from collector.api.server_metrics import ServerCollector
from collector.backup import CsvSpool
from collector.buffer import TagBuffer
from collector.circuit import CircuitState
from collector.circuit_timing import opening_times
from collector.config import Config, MqttSourceConfig, SqliteSinkConfig
from collector.file_safety import FileModes, private_file
from collector.interpreter import BULK_FIRST_THRESHOLD, GIL_SWITCH_INTERVAL_S, InterpreterTuning
from collector.inventory import ContentsCache, Inventory, scan
from collector.logged_buffer import LoggedBuffer
from collector.logs import RateLimiter, log_event
from collector.retry import RetryPolicy
from collector.sinks import Sink, SinkError, build_sink
from collector.sinks.factory import writer_workers
from collector.sources.counters import SourceCounters, SourceState
from collector.sources.intake import Intake, QueueSource
from collector.sources.invalid import RejectedReadings
from collector.sources.mqtt import MqttSource
from collector.sources.network import PayloadIntake
from collector.sources.setup import build_http_intake, build_mqtt_source
from collector.sources.simulator import Simulator, split_tags
from collector.spool_format import SpoolKind
from collector.stats import Snapshot
from collector.telemetry import ListenerChain, Telemetry
from collector.telemetry.logins import LoginCollector
from collector.telemetry.sources import SourceLag
from collector.telemetry.tracing import configure_tracing, default_instance_id
from collector.wal import RecoveryReport, WalInUseError, WriteAheadLog
from collector.writer import BatchWriter, WriterListener

log = logging.getLogger("collector.service")

MONITOR_INTERVAL_S = 1.0
UTILIZATION_WARNING = 0.8


class StartupError(RuntimeError):
    """The service cannot start: the database refuses the login or the schema is wrong."""


class Component(Protocol):
    """Something that runs beside the pipeline (the HTTP server, for example)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    pending_at_stop: int
    snapshot: Snapshot


class CollectorService:
    """The whole pipeline: source -> intake -> buffer -> writer -> sink, with backups and stats.

    ``gil_switch_interval_s`` is set as the interpreter's switch interval from start to stop, if it
    is shorter than the one in force, and ``gc_first_threshold`` as the cyclic garbage collector's
    first threshold, if it is higher (see :mod:`collector.interpreter`). ``None`` leaves the
    interpreter alone: an application that embeds the service and tunes either itself passes it.
    """

    def __init__(
        self,
        config: Config,
        *,
        data_queue: queue.Queue[object] | None = None,
        sink: Sink | None = None,
        listener: WriterListener | None = None,
        telemetry: Telemetry | None = None,
        gil_switch_interval_s: float | None = GIL_SWITCH_INTERVAL_S,
        gc_first_threshold: int | None = BULK_FIRST_THRESHOLD,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self._interpreter = InterpreterTuning(gil_switch_interval_s, gc_first_threshold)
        buffer_cfg, writer_cfg, backup_cfg = config.buffer, config.writer, config.backup
        # Where the data goes, as an operator must find it: relative paths in the configuration are
        # resolved from the working directory, so the startup line and the status show them whole.
        self.database = config.sink.target()
        self.backup_dir = str(backup_cfg.dir.absolute())
        self.fallback_dir = str(backup_cfg.fallback_dir.absolute()) if backup_cfg.fallback_dir else None
        spill_level = (
            max(1, int(buffer_cfg.max_size * buffer_cfg.spill_ratio)) if buffer_cfg.spill_ratio else None
        )
        self.wal, self.buffer = _build_buffer(config, spill_level)
        self.file_modes = FileModes(config.files.mode)
        self.backup = CsvSpool(
            backup_cfg.dir,
            kind=SpoolKind.BACKUP,
            modes=self.file_modes,
            fallback_dir=backup_cfg.fallback_dir,
            max_file_bytes=backup_cfg.max_file_bytes,
            idle_close_s=backup_cfg.idle_close_s,
        )
        self.rejected = CsvSpool(
            backup_cfg.dir,
            kind=SpoolKind.REJECTED,
            modes=self.file_modes,
            fallback_dir=backup_cfg.fallback_dir,
            max_file_bytes=backup_cfg.max_file_bytes,
            idle_close_s=backup_cfg.idle_close_s,
        )
        # Metrics, traces and the HTTP API (one registry per service; see collector.telemetry).
        self.telemetry = (
            telemetry
            if telemetry is not None
            else Telemetry(
                tracing=configure_tracing(
                    instance_id=default_instance_id(config.api.port if config.api.enabled else None)
                )
            )
        )
        # The sink's CLIENT spans come from the service's tracer, beneath the writer's spans.
        if sink is None and isinstance(config.sink, SqliteSinkConfig):
            self._protect_database(config.sink.path)
        self.sink = (
            sink if sink is not None else build_sink(config.sink, tracer=self.telemetry.tracer, clock=clock)
        )
        # Refused logins (Oracle and PostgreSQL sinks have a login guard; SQLite has no login).
        login_status = getattr(self.sink, "login_status", None)
        self.telemetry.registry.register(LoginCollector(login_status if callable(login_status) else None))
        self.listener: WriterListener = (
            ListenerChain(self.telemetry.listener, listener)
            if listener is not None
            else self.telemetry.listener
        )
        # Writer threads: as configured, or the number measured best for this database.
        self.workers = writer_workers(
            writer_cfg.workers, "workers" in writer_cfg.model_fields_set, config.sink.type
        )
        self.writer = BatchWriter(
            self.buffer,
            self.sink,
            self.backup,
            self.rejected,
            flush_interval_s=writer_cfg.flush_interval_s,
            retry=RetryPolicy.of(writer_cfg.max_retries, writer_cfg.backoff_s),
            workers=self.workers,
            probe_interval_s=writer_cfg.probe_interval_s,
            spill=spill_level is not None,
            listener=self.listener,
            tracer=self.telemetry.tracer,
            on_settled=self.buffer.settled if isinstance(self.buffer, LoggedBuffer) else None,
            clock=clock or time.monotonic,
        )
        self.intake = Intake(
            self.buffer,
            RejectedReadings(self.rejected, tracer=self.telemetry.tracer),
            naive_is_utc=config.source.naive_timestamps == "utc",
        )
        self.data_queue: queue.Queue[object] = data_queue if data_queue is not None else queue.Queue()
        self.source = QueueSource(self.data_queue, self.intake)
        self.simulator: Simulator | None = None
        source_cfg = config.source
        self.mqtt, self.ingest = self._network_sources()
        if source_cfg.type == "simulator":
            sizes = (
                split_tags(source_cfg.tags, source_cfg.groups)
                if source_cfg.tags is not None
                else [source_cfg.tags_per_group] * source_cfg.groups
            )
            self.simulator = Simulator(
                deliver=self.intake.submit,
                groups=source_cfg.groups,
                tags_per_group=sizes,
                interval_s=source_cfg.interval_s,
                bad_ratio=source_cfg.bad_ratio,
                seed=source_cfg.seed,
                ledger=source_cfg.ledger,
            )
        # Row counts and time ranges of the waiting files: read on the monitor thread, so that a
        # status request or a scrape never waits for a backup file to be read.
        self.backup_contents = ContentsCache()
        self.components: list[Component] = [self.telemetry]
        self.telemetry.watch(
            self.snapshot,
            self.inventory,
            build_info={"version": __version__, "sink": config.sink.type},
            spill_ratio=spill_level / buffer_cfg.max_size if spill_level is not None else None,
            backup_dirs=self.backup.directories,
        )
        self.api: ApiServer | None = None
        if config.api.enabled:
            self.api = ApiServer(
                ApiApp(self, self.telemetry, ingest=self._ingest_endpoint()),
                config.api.host,
                config.api.port,
                limits=ServerLimits(max_connections=config.api.max_connections),
                allowed_hosts=config.api.allowed_hosts,
            )
            self.telemetry.registry.register(ServerCollector(self.api))
            self.components.append(self.api)
        self._monitor_stop = threading.Event()
        self._monitor = threading.Thread(target=self._run_monitor, name="monitor", daemon=True)
        self._overflow_log = RateLimiter(buffer_cfg.overflow_log_interval_s)
        self._utilization_log = RateLimiter(buffer_cfg.overflow_log_interval_s)
        self._last_overflow = 0
        self._last_overflow_at = time.monotonic()
        self._started = False
        self._stopped: ShutdownReport | None = None
        self._stopping = False
        self._stop_lock = threading.Lock()
        self.started_at: float | None = None

    def _protect_database(self, path: Path) -> None:
        """The SQLite file is created owner-only before the sink opens it (SQLite gives its journal
        files the same mode); one left more open by an earlier version is narrowed, and said so."""
        try:
            narrowed_files = private_file(path, self.file_modes)
        except OSError as exc:
            # The sink will say what is wrong with the path (an outage if it passes); this only
            # notes that its mode could not be checked.
            log_event(
                log,
                logging.WARNING,
                "file_mode_unchecked",
                "cannot check the database file's mode",
                path=str(path),
                error=exc.strerror or str(exc),
            )
            return
        for narrowed in narrowed_files:
            log_event(
                log,
                logging.WARNING,
                "file_mode_narrowed",
                "the database file was readable by others; narrowed to files.mode",
                path=str(narrowed),
                mode=f"{self.file_modes.file:04o}",
            )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._check_sink()
        self._interpreter.apply()
        recovery = self._open_wal()
        self.writer.start()
        if self.wal is not None:
            self.wal.start()
        if recovery is not None:
            self._recover(recovery)
        self.source.start()
        if self.simulator is not None:
            self.simulator.start()
        if self.mqtt is not None:
            self.mqtt.start()
        self._monitor.start()
        for component in self.components:
            component.start()
        self._started = True
        self.started_at = time.time()
        log_event(
            log,
            logging.INFO,
            "service_started",
            sink=self.config.sink.type,
            database=self.database,
            table=self.sink.table,
            backup_dir=self.backup_dir,
            fallback_dir=self.fallback_dir,
            source=self.config.source.type,
            rate_per_s=round(self.simulator.rate, 1) if self.simulator else None,
            buffer_capacity=self.buffer.capacity,
            batch_size=self.buffer.batch_size,
            workers=self.workers,
            api=self.api.url if self.api is not None else None,
            # How long an outage lasts before batches go straight to backup, per way of failing.
            circuit_opens_after_s="; ".join(t.describe() for t in opening_times(self.config)),
        )

    def _open_wal(self) -> RecoveryReport | None:
        if self.wal is None:
            return None
        try:
            return self.wal.open()
        except WalInUseError as exc:
            raise StartupError(f"wal.dir: {exc}") from exc

    def _recover(self, report: RecoveryReport) -> None:
        """Put what the log held from before the last stop back in front of new data."""
        assert isinstance(self.buffer, LoggedBuffer)
        repair = report.repair
        if report.pending_values or repair.quarantined_ranges or repair.torn_cut_bytes:
            started = time.monotonic()
            log_event(
                log,
                logging.INFO,
                "wal_recovering",
                "writing unfinished values from before the last stop before new data",
                pending=report.pending_values,
            )
            fed = self.buffer.feed_recovered()
            log_event(
                log,
                logging.WARNING,
                "wal_recovered",
                "unfinished values from before the last stop are written first",
                recovered=fed,
                mark=report.mark,
                segments=report.segments,
                torn_bytes=repair.torn_cut_bytes,
                quarantined_ranges=repair.quarantined_ranges,
                quarantined_values=repair.quarantined_values,
                seconds=round(time.monotonic() - started, 3),
            )
        else:
            self.buffer.feed_recovered()

    def _check_sink(self) -> None:
        try:
            self.sink.ping()
            self.telemetry.listener.sink_answered(True)
        except SinkError as exc:
            self.telemetry.listener.sink_answered(False)
            if not exc.transient:
                raise StartupError(f"{self.config.sink.type} sink refused: {exc.describe()}") from exc
            # A database that is down at start is an outage like any other: run, back up, probe.
            log_event(
                log,
                logging.ERROR,
                "sink_unavailable_at_start",
                "database unavailable at start; values go to backup until it answers",
                error=exc.describe(),
            )
            self.writer.circuit.trip(f"unavailable at start: {exc.describe()}")

    def stop(self) -> ShutdownReport:
        """Stop everything in order; returns what was pending and where everything went."""
        with self._stop_lock:
            if self._stopped is not None:
                return self._stopped
            self._stopping = True
            if self.simulator is not None:
                self.simulator.stop()
            if self.ingest is not None:
                self.ingest.counters.set_state(SourceState.CLOSED)  # POST /api/v1/values answers 503
            if self.mqtt is not None:
                self.mqtt.stop()  # accepts and acknowledges what it received; the broker keeps the rest
            self.source.stop()
            left_on_queue = self.data_queue.qsize()
            if left_on_queue:
                log_event(
                    log,
                    logging.ERROR,
                    "queue_not_drained",
                    "polls left on the DataQueue",
                    polls=left_on_queue,
                )
            pending = self.writer.stop(self.config.writer.shutdown_timeout_s)
            self._monitor_stop.set()
            if self._monitor.is_alive():
                self._monitor.join()
            for component in reversed(self.components):
                try:
                    component.stop()
                except Exception:
                    log.exception("error stopping %s", type(component).__name__)
            self.sink.close()
            self.backup.close()
            self.rejected.close()
            if self.wal is not None:
                self.wal.close()  # every value settled: the log is emptied
            snapshot = self.snapshot()
            log_event(
                log,
                logging.INFO,
                "shutdown_complete",
                "collector stopped",
                pending_at_stop=pending,
                accepted=snapshot.accepted,
                recovered=snapshot.recovered,
                **snapshot.terms(),
                balanced=snapshot.balanced(),
            )
            self._stopped = ShutdownReport(pending, snapshot)
            self._interpreter.restore()
            return self._stopped

    def run(self, duration_s: float | None = None, *, install_signals: bool = True) -> ShutdownReport:
        """Start, run until SIGTERM/SIGINT or ``duration_s``, then stop gracefully."""
        stop = threading.Event()
        restore: list[tuple[int, Callable[[int, FrameType | None], object] | int | None]] = []
        if install_signals and threading.current_thread() is threading.main_thread():

            def _on_signal(signum: int, _frame: FrameType | None) -> None:
                log_event(log, logging.INFO, "signal_received", signal=signal.Signals(signum).name)
                stop.set()

            for sig in (signal.SIGTERM, signal.SIGINT):
                restore.append((sig, signal.getsignal(sig)))
                signal.signal(sig, _on_signal)
        try:
            self.start()
            stop.wait(duration_s)
        finally:
            try:
                report = self.stop()
            finally:
                for signum, handler in restore:
                    signal.signal(signum, handler)
        return report

    # ------------------------------------------------------------------ monitoring

    def snapshot(self) -> Snapshot:
        return Snapshot(
            writer=self.writer.stats(),
            intake=self.intake.stats(),
            backup=self.backup.stats(),
            rejected_files=self.rejected.stats(),
            wal=self.wal.stats() if self.wal is not None else None,
            sources=tuple(counters.stats() for counters in self.source_counters()),
        )

    def _network_sources(self) -> tuple[MqttSource | None, PayloadIntake | None]:
        """Network intake (MQTT, POST /api/v1/values): see collector.sources.network."""
        lag = SourceLag(self.telemetry.registry)
        source_cfg, api = self.config.source, self.config.api
        mqtt = (
            build_mqtt_source(source_cfg, self.intake, lag.observe)
            if isinstance(source_cfg, MqttSourceConfig)
            else None
        )
        ingest = build_http_intake(self.intake, lag.observe) if api.enabled and api.ingest_enabled() else None
        for source in (mqtt, ingest):
            if source is not None:
                lag.declare(source.counters.kind)
        return mqtt, ingest

    def _ingest_endpoint(self) -> IngestEndpoint:
        ingest = self.config.api.ingest
        return IngestEndpoint(
            self.ingest,
            token=ingest.secret(),
            max_body_bytes=ingest.max_body_bytes,
            refusing=lambda: "shutting down" if self._stopping else None,
            disabled_reason=f"the API listens on {self.config.api.host}, beyond loopback, and no"
            " api.ingest.token is set (or api.ingest.enabled is false)",
        )

    def source_counters(self) -> list[SourceCounters]:
        """The counters of the network sources this service runs."""
        holders = [self.mqtt, self.ingest]
        return [holder.counters for holder in holders if holder is not None]

    def inventory(self) -> Inventory:
        """The backup and rejected files waiting in the backup directories, with their rows and
        time range as the monitor thread last read them."""
        return scan(self.backup.directories, contents=self.backup_contents, refresh=False)

    def service_info(self) -> ServiceInfo:
        state = "stopping" if self._stopping else "running" if self._started else "starting"
        return ServiceInfo(
            version=__version__,
            sink=self.config.sink.type,
            table=self.sink.table,
            source=self.config.source.type,
            database=self.database,
            backup_dir=self.backup_dir,
            fallback_dir=self.fallback_dir,
            started_at=self.started_at,
            state=state,
        )

    def liveness(self) -> list[str]:
        """Why the service is not alive (a pipeline thread died); empty when it is."""
        if not self._started or self._stopping:
            return []  # threads not started yet, or ending on purpose
        threads = [*self.writer.threads, self.source.thread]
        if self.simulator is not None:
            threads.append(self.simulator.thread)
        if self.mqtt is not None:
            threads.append(self.mqtt.thread)
        return [f"thread {t.name} is not running" for t in threads if not t.is_alive()]

    def readiness(self) -> list[str]:
        """Why the service cannot write to the database now; empty when it can."""
        if self._stopping:
            return ["shutting down"]
        if not self._started:
            return ["starting"]
        problems = self.liveness()
        circuit = self.writer.circuit.status()
        if circuit.state is CircuitState.OPEN:
            problems.append(f"database unavailable: {circuit.reason}")
        elif not self.telemetry.listener.sink_contacted:
            problems.append("the database has not answered yet")
        elif not self.telemetry.listener.sink_ok:
            problems.append("the last write failed; retrying")
        return problems

    def _run_monitor(self) -> None:
        while not self._monitor_stop.wait(MONITOR_INTERVAL_S):
            try:
                self._check_buffer()
                self.backup.close_if_idle()
                self.rejected.close_if_idle()
                scan(self.backup.directories, contents=self.backup_contents)
            except Exception:
                log.exception("monitor error")

    def _check_buffer(self) -> None:
        stats = self.buffer.stats()
        now = time.monotonic()
        if stats.overflow > self._last_overflow and self._overflow_log.ready():
            dropped = stats.overflow - self._last_overflow
            elapsed = now - self._last_overflow_at
            log_event(
                log,
                logging.WARNING,
                "buffer_overflow",
                "buffer full: oldest values discarded",
                dropped=dropped,
                period_s=round(elapsed, 1),
                overflow_total=stats.overflow,
                inserted_total=stats.inserted,
                overflow_ratio=round(stats.overflow / stats.inserted, 6) if stats.inserted else 0.0,
                size=stats.size,
                capacity=stats.capacity,
            )
            self._last_overflow = stats.overflow
            self._last_overflow_at = now
        elif stats.utilization >= UTILIZATION_WARNING and self._utilization_log.ready():
            log_event(
                log,
                logging.WARNING,
                "buffer_high",
                "buffer above 80%: the writers are not keeping up",
                size=stats.size,
                capacity=stats.capacity,
                utilization=round(stats.utilization, 3),
            )


def _build_buffer(config: Config, spill_level: int | None) -> tuple[WriteAheadLog | None, TagBuffer]:
    """The ring buffer, with the write-ahead log in front of it unless ``wal.durability`` is off
    (docs/reliability.md): every poll batch is logged before the writers can see it, and released
    when the writers report its fate final and durable."""
    capacity, batch_size = config.buffer.max_size, config.writer.batch_size
    if config.wal.durability == "off":
        return None, TagBuffer(capacity, batch_size=batch_size, spill_level=spill_level)
    wal_cfg = config.wal
    wal = WriteAheadLog(
        config.wal_dir,
        durability=wal_cfg.durability,
        fsync_interval_s=wal_cfg.fsync_interval_s,
        segment_bytes=wal_cfg.segment_bytes,
        max_bytes=wal_cfg.max_bytes,
    )
    return wal, LoggedBuffer(wal, capacity, batch_size=batch_size, spill_level=spill_level)
