import pytest

from collector.circuit import CircuitBreaker, CircuitState
from collector.retry import RetryPolicy
from tests.fakes import ManualClock


def test_default_schedule_is_one_two_four_seconds_then_backup():
    policy = RetryPolicy()
    assert [policy.delay_after(n) for n in range(1, 5)] == [1.0, 2.0, 4.0, None]
    assert policy.window_s == 7.0


def test_a_short_backoff_list_repeats_its_last_delay():
    policy = RetryPolicy.of(5, [0.5, 3])
    assert [policy.delay_after(n) for n in range(1, 7)] == [0.5, 3.0, 3.0, 3.0, 3.0, None]


def test_no_retries_means_straight_to_backup():
    assert RetryPolicy.of(0, []).delay_after(1) is None


@pytest.mark.parametrize(("retries", "backoff"), [(-1, [1.0]), (2, []), (1, [-1.0])])
def test_invalid_policies_fail_at_construction(retries, backoff):
    with pytest.raises(ValueError):
        RetryPolicy.of(retries, backoff)


def test_circuit_probes_once_per_interval_and_one_at_a_time():
    clock = ManualClock()
    circuit = CircuitBreaker(5.0, clock=clock, wall_clock=lambda: 1.0e9)
    assert not circuit.claim_probe()  # closed: nothing to probe
    assert circuit.trip("retries exhausted")
    assert not circuit.trip("again")  # already open: reported once
    assert circuit.status().state is CircuitState.OPEN
    assert circuit.status().opened_at == 1.0e9
    assert not circuit.claim_probe()
    assert circuit.seconds_to_probe() == 5.0
    clock.advance(5.0)
    assert circuit.claim_probe()
    assert not circuit.claim_probe()  # the first probe is still running
    assert not circuit.probe_done(False, "still down")
    assert circuit.status().reason == "still down"
    clock.advance(4.9)
    assert not circuit.claim_probe()
    clock.advance(0.1)
    assert circuit.claim_probe()
    assert circuit.probe_done(True)
    status = circuit.status()
    assert (status.state, status.reason, status.trips, status.probes) == (CircuitState.CLOSED, "", 1, 2)


def test_permanent_reason_is_kept_until_the_probe_succeeds():
    clock = ManualClock()
    circuit = CircuitBreaker(1.0, clock=clock)
    circuit.trip("ORA-00942: table or view does not exist", permanent=True)
    clock.advance(1.0)
    assert circuit.claim_probe()
    circuit.probe_done(False, "ORA-00942: table or view does not exist", permanent=True)
    assert circuit.status().permanent
    clock.advance(1.0)
    assert circuit.claim_probe()
    circuit.probe_done(True)
    assert not circuit.status().permanent
