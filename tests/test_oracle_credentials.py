"""Refused credentials: probes that cannot lock the account.

Oracle's DEFAULT profile locks an account after 10 refused logins in a row (ORA-28000, and the lock
stays once the password is fixed). The double counts them as Oracle does; the collector, after a
refusal, waits longer and longer before logging in again, stops below the limit, and tries at once
when the password file changes. Time is injected: an hour passes in a moment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import oracledb
import pytest

from collector.circuit import CircuitState
from collector.config import Config, OracleSinkConfig, PostgresSinkConfig, SqliteSinkConfig
from collector.model import PollingData, TagValue
from collector.service import CollectorService
from collector.sinks import build_sink
from collector.sinks.base import PermanentSinkError
from collector.sinks.login_guard import LoginBackoff, LoginGuard
from collector.sinks.oracle import OracleSink, ddl
from collector.sinks.postgresql import PostgresSink
from collector.telemetry import Telemetry
from tests.oracle_double import FakeOracle
from tests.waiting import wait_until

DSN = "localhost:1521/FREEPDB1"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def db() -> FakeOracle:
    fake = FakeOracle()  # FAILED_LOGIN_ATTEMPTS 10, as the DEFAULT profile
    fake.execute_ddl(ddl())
    return fake


def events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(getattr(record, "collector_event", "")) for record in caplog.records]


# ---------------------------------------------------------------------- the schedule


def test_the_backoff_doubles_and_stops_below_the_lock_limit() -> None:
    backoff = LoginBackoff(first_s=60, max_s=1800, max_failures=5)
    assert [backoff.delay_after(n) for n in range(1, 7)] == [60, 120, 240, 480, None, None]
    endless = LoginBackoff(first_s=60, max_s=300, max_failures=0)
    assert [endless.delay_after(n) for n in (1, 3, 4, 10)] == [60, 240, 300, 300]
    with pytest.raises(ValueError):
        LoginBackoff(first_s=60, max_s=30)


# ---------------------------------------------------------------------- the double, as Oracle


def login(db: FakeOracle, password: str) -> str:
    try:
        db.connect(user="app", password=password, dsn=DSN).close()
    except oracledb.Error as exc:
        return str(exc.args[0].full_code)
    return "ok"


def test_the_double_locks_the_account_after_failed_login_attempts(db: FakeOracle) -> None:
    assert [login(db, "wrong") for _ in range(9)] == ["ORA-01017"] * 9
    assert login(db, "app-secret") == "ok"  # a good login resets the count
    assert [login(db, "wrong") for _ in range(10)] == ["ORA-01017"] * 10
    assert login(db, "app-secret") == "ORA-28000"  # locked: the right password no longer helps
    db.unlock("app")
    assert login(db, "app-secret") == "ok"
    db.expire("app")
    assert login(db, "app-secret") == "ORA-28001"
    assert len(db.logins) == 23 and db.open_sessions == 0


# ---------------------------------------------------------------------- the guard over the sink


@pytest.fixture
def guarded(db: FakeOracle, tmp_path: Path) -> Iterator[tuple[LoginGuard, Clock, Path]]:
    secret = tmp_path / "oracle_password"
    secret.write_text("wrong\n")
    clock = Clock()
    config = OracleSinkConfig(dsn=DSN, user="app", password_file=secret, call_timeout_s=1)
    sink = build_sink(config, oracle_driver=db, clock=clock)
    assert isinstance(sink, LoginGuard) and isinstance(sink.inner, OracleSink)
    yield sink, clock, secret
    sink.close()


def test_a_refused_login_is_said_plainly_and_not_repeated_before_its_time(
    db: FakeOracle, guarded: tuple[LoginGuard, Clock, Path], caplog: pytest.LogCaptureFixture
) -> None:
    sink, clock, _ = guarded
    with caplog.at_level(logging.ERROR), pytest.raises(PermanentSinkError) as info:
        sink.ping()
    assert info.value.credentials and info.value.code == "ORA-01017"
    assert "credentials refused by the database" in str(info.value)
    assert "next login attempt in 60 s" in str(info.value)
    assert "credentials_refused" in events(caplog)
    assert len(db.logins) == 1
    for _ in range(11):  # a probe every 5 s for 55 s: answered without a login
        clock.advance(5)
        with pytest.raises(PermanentSinkError):
            sink.ping()
    assert len(db.logins) == 1
    clock.advance(5)
    with pytest.raises(PermanentSinkError):
        sink.ping()  # 60 s: one more login
    assert len(db.logins) == 2
    status = sink.login_status()
    assert (status.refused, status.failed_logins, status.suspended) == (True, 2, False)
    assert status.next_attempt_in_s == 120


def test_after_a_refusal_the_pool_is_closed_and_a_retry_is_one_login(
    db: FakeOracle, guarded: tuple[LoginGuard, Clock, Path]
) -> None:
    sink, clock, _ = guarded
    with pytest.raises(PermanentSinkError):
        sink.ping()
    assert all(not pool._open for pool in db.pools)  # nothing left that could log in by itself
    clock.advance(60)
    pools_before = len(db.pools)
    with pytest.raises(PermanentSinkError):
        sink.ping()
    assert len(db.logins) == 2  # one standalone login ...
    assert len(db.pools) == pools_before  # ... and no pool of five until a login succeeds


def test_a_changed_password_file_is_tried_at_once_and_writing_resumes(
    db: FakeOracle, guarded: tuple[LoginGuard, Clock, Path]
) -> None:
    sink, clock, secret = guarded
    with pytest.raises(PermanentSinkError):
        sink.ping()
    clock.advance(5)
    secret.write_text("app-secret\n")  # the operator fixes the file; no waiting for the backoff
    sink.ping()
    assert sink.login_status().refused is False
    assert sink.write([TagValue("A", 1.0, T0)]).written == 1
    assert db.failed_logins["APP"] == 0


def test_the_guard_stops_below_the_limit_so_the_account_never_locks(
    db: FakeOracle, guarded: tuple[LoginGuard, Clock, Path]
) -> None:
    sink, clock, _ = guarded
    for _ in range(24 * 60):  # a probe a minute for a day
        with pytest.raises(PermanentSinkError) as info:
            sink.ping()
        clock.advance(60)
    assert len(db.logins) == 5  # max_failed_logins, then no more
    assert "APP" not in db.locked
    assert "no more login attempts until the password file changes" in str(info.value)
    assert sink.login_status().suspended


# ---------------------------------------------------------------------- the service, for an hour


class RunningService:
    """The service over the double with an injected clock, fed one poll (a full batch) at a time."""

    def __init__(self, tmp_path: Path, db: FakeOracle, secret: Path, clock: Clock) -> None:
        config = Config.model_validate(
            {
                "source": {"type": "external"},
                "writer": {"batch_size": 10, "flush_interval_s": 0.02, "workers": 2, "probe_interval_s": 5},
                "sink": {"type": "oracle", "dsn": DSN, "user": "app", "password_file": str(secret)},
                "backup": {"dir": str(tmp_path / "backup")},
                "api": {"enabled": False},
            }
        )
        assert isinstance(config.sink, OracleSinkConfig)
        self.max_failed_logins = config.sink.max_failed_logins
        self.clock = clock
        self.service = CollectorService(
            config,
            sink=build_sink(config.sink, oracle_driver=db, clock=clock),
            telemetry=Telemetry(process_metrics=False),
            clock=clock,
        )
        self.circuit = self.service.writer.circuit
        self.polls = 0

    def feed(self) -> None:
        self.polls += 1
        stamp = T0 + timedelta(seconds=self.polls)
        self.service.data_queue.put(PollingData("G", stamp, {f"T{i}": float(i) for i in range(10)}))

    def probe_after(self, seconds: float) -> None:
        """Move the clock on and wait for the probe that is then due to finish."""
        before = self.circuit.status().probes
        self.clock.advance(seconds)
        self.feed()  # a full batch wakes a worker, which probes once the probe is due
        # A probe is counted when it starts, and done once the next one is scheduled (or the
        # circuit closed: no next one).
        wait_until(
            lambda: self.circuit.status().probes > before and self.circuit.seconds_to_probe() != 0,
            what="the next probe",
        )

    def metric(self, name: str) -> float | None:
        return self.service.telemetry.registry.get_sample_value(name)


@pytest.mark.slow  # seconds: 720 probes, each with a fsynced backup append
def test_a_wrong_password_for_an_hour_spends_a_handful_of_logins(tmp_path: Path, db: FakeOracle) -> None:
    """The service runs; the DBA changes the password (and the sessions end); the password file is
    not updated for an hour of simulated time; then it is, and writing resumes at once."""
    secret = tmp_path / "oracle_password"
    secret.write_text("app-secret\n")
    run = RunningService(tmp_path, db, secret, Clock())
    run.service.start()
    try:
        run.feed()
        wait_until(lambda: db.count() == 10, what="the first poll in the database")
        logins_before = len(db.logins)
        db.set_password("app", "rotated-by-the-dba")
        db.kill_sessions()
        run.feed()
        wait_until(lambda: run.circuit.is_open, what="the circuit to open on the refusal")
        assert run.circuit.status().permanent and "credentials refused" in run.circuit.status().reason

        for _ in range(3600 // 5):  # an hour of probes, one every 5 s
            run.probe_after(5)
        refused = len(db.logins) - logins_before
        assert refused <= run.max_failed_logins + 1, db.logins  # +1: both workers at the start
        assert "APP" not in db.locked
        assert run.metric("collector_sink_credentials_refused") == 1
        assert run.metric("collector_sink_login_suspended") == 1
        assert run.metric("collector_sink_failed_logins") == refused
        assert "no more login attempts until the password file changes" in run.circuit.status().reason

        secret.write_text("rotated-by-the-dba\n")  # the operator updates the file
        run.probe_after(5)
        assert run.circuit.status().state is CircuitState.CLOSED
        written = db.count()
        run.feed()
        wait_until(lambda: db.count() == written + 10, what="writing to resume")
        assert run.metric("collector_sink_credentials_refused") == 0
    finally:
        report = run.service.stop()
    assert report.snapshot.balanced()
    assert report.snapshot.lost == 0


def test_both_network_sinks_are_guarded_and_sqlite_exports_no_refusal(tmp_path: Path) -> None:
    secret = tmp_path / "pg_password"
    secret.write_text("s3cret\n")
    postgres = build_sink(PostgresSinkConfig(host="127.0.0.1", dbname="test", user="u", password_file=secret))
    try:
        assert isinstance(postgres, LoginGuard) and isinstance(postgres.inner, PostgresSink)
        assert (postgres.system_name, postgres.table) == ("postgresql", "TAG_DATA")
    finally:
        postgres.close()
    sqlite = build_sink(SqliteSinkConfig(path=tmp_path / "t.db"))
    assert not isinstance(sqlite, LoginGuard)
    sqlite.close()
