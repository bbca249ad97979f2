"""Stop signals, delivered for real to this process: Ctrl-C stops at once; SIGTERM (a
preempted pod, `ray job stop`) lets the shards in flight finish within the grace period."""

from __future__ import annotations

import os
import signal
import time

import pytest

from pipeline.run.interrupts import Stop, stop_on_signals


def _deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # Python runs the handler at the next bytecode boundary


def test_ctrl_c_stops_at_once_even_with_shards_in_flight():
    with pytest.raises(Stop) as stopped, stop_on_signals(grace_s=20) as request:
        request.in_flight = lambda: {"a"}
        _deliver(signal.SIGINT)
    assert stopped.value.signum == signal.SIGINT


def test_sigterm_with_nothing_in_flight_stops_at_once():
    with pytest.raises(Stop) as stopped, stop_on_signals(grace_s=20):
        _deliver(signal.SIGTERM)
    assert stopped.value.signum == signal.SIGTERM


def test_sigterm_waits_for_the_shards_in_flight_then_stops():
    with pytest.raises(Stop) as stopped, stop_on_signals(grace_s=20) as request:
        request.in_flight = lambda: {"a", "b"}
        _deliver(signal.SIGTERM)
        assert request.draining == {"a", "b"}
        request.check({"a", "b", "c"})  # both still unfinished: go on
        request.check({"b", "c"})  # "a" committed
        request.check({"c"})  # "b" committed too: nothing left to wait for
    assert stopped.value.signum == signal.SIGTERM


def test_sigterm_stops_when_the_grace_period_ends():
    start = time.monotonic()
    with pytest.raises(Stop), stop_on_signals(grace_s=0.5) as request:
        request.in_flight = lambda: {"a"}
        _deliver(signal.SIGTERM)
        while time.monotonic() - start < 10:
            request.check({"a"})  # "a" never finishes
            time.sleep(0.01)
    assert 0.4 < time.monotonic() - start < 2


def test_handlers_and_timer_are_restored_after_the_block():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(Stop), stop_on_signals(grace_s=30) as request:
        request.in_flight = lambda: {"a"}
        _deliver(signal.SIGTERM)
        request.check(set())
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
