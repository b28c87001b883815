"""The watchdog that aborts database calls which overrun their deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from collector.sinks.watchdog import Watchdog


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def watchdog(clock: FakeClock) -> Iterator[Watchdog]:
    dog = Watchdog("test-watchdog", clock=clock)
    yield dog
    dog.close()


def test_only_guards_past_their_deadline_fire(watchdog: Watchdog, clock: FakeClock) -> None:
    fired: list[str] = []
    early = watchdog.arm(1.0, lambda: fired.append("early"))
    late = watchdog.arm(5.0, lambda: fired.append("late"))

    assert watchdog.expire(clock.now + 0.5) == pytest.approx(0.5)
    assert fired == []
    assert watchdog.expire(clock.now + 2.0) == pytest.approx(3.0)

    assert fired == ["early"]
    assert early.fired and not late.fired


def test_a_disarmed_guard_never_fires(watchdog: Watchdog, clock: FakeClock) -> None:
    fired: list[str] = []
    with watchdog.guard(1.0, lambda: fired.append("call")) as guard:
        pass

    assert watchdog.expire(clock.now + 10.0) is None
    assert fired == []
    assert not guard.fired


def test_an_abort_that_raises_does_not_stop_the_others(watchdog: Watchdog, clock: FakeClock) -> None:
    fired: list[str] = []

    def broken() -> None:
        raise OSError("socket already gone")

    watchdog.arm(1.0, broken)
    watchdog.arm(1.0, lambda: fired.append("second"))

    watchdog.expire(clock.now + 1.0)

    assert fired == ["second"]


def test_close_stops_the_thread_and_refuses_new_guards(clock: FakeClock) -> None:
    dog = Watchdog("closing-watchdog", clock=clock)
    dog.arm(60.0, lambda: None)
    assert any(thread.name == "closing-watchdog" for thread in threading.enumerate())

    dog.close()
    dog.close()

    assert not any(thread.name == "closing-watchdog" for thread in threading.enumerate())
    with pytest.raises(RuntimeError):
        dog.arm(1.0, lambda: None)


def test_the_thread_wakes_a_call_blocked_on_a_silent_socket() -> None:
    # A peer that accepts and never answers: recv would block forever without the watchdog.
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    dog = Watchdog("socket-watchdog")
    try:
        started = time.monotonic()
        with dog.guard(0.2, lambda: client.shutdown(socket.SHUT_RDWR)) as guard:
            data = client.recv(1)
        assert data == b""
        assert guard.fired
        assert time.monotonic() - started < 10
    finally:
        dog.close()
        client.close()
        listener.close()
