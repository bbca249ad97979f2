"""Ctrl-C and SIGTERM (what Kubernetes and `ray job stop` send) stop a run cleanly: no
new work is taken, a commit in flight completes or is abandoned whole (commits are
atomic), the lease is released, and the caller learns how far the run got. SIGTERM first
lets the shards in flight finish within a grace period. A second signal exits at once."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(KeyboardInterrupt):
    """Raised in the main thread by the first stop signal; a KeyboardInterrupt, so no
    `except Exception` on the way mistakes it for a failed pass."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class RunInterrupted(Exception):
    """The run stopped on a signal; `committed` of `pending` shards were committed."""

    def __init__(self, signum: int, committed: int, pending: int):
        super().__init__(
            f"interrupted: {committed} of {pending} shards committed; "
            "rerun the same command to resume"
        )
        self.exit_code = 128 + signum  # 130 for SIGINT, 143 for SIGTERM, as shells report


class StopRequest:
    """A graceful stop in progress. SIGTERM is how Kubernetes preempts a pod and how `ray
    job stop` ends a job, with SIGKILL following after a grace period: the run stops taking
    new work, lets the shards it holds rows of (`in_flight`, set by the runner) complete
    and commit for up to `grace_s`, then stops. Ctrl-C stops at once."""

    def __init__(self, grace_s: float):
        self.grace_s = grace_s
        self.signum: int | None = None
        self.draining: set[str] = set()  # the shards a stop waits for
        self.in_flight: Callable[[], set[str]] = set

    def check(self, unfinished: set[str]) -> None:
        """Raise Stop once a graceful stop has nothing left to wait for."""
        if self.signum is not None and not self.draining & unfinished:
            raise Stop(self.signum)

    def _begin(self, signum: int) -> None:
        self.signum = signum
        self.draining = self.in_flight()
        if not self.draining or self.grace_s <= 0:
            raise Stop(signum)
        log.warning(
            "%s: finishing %d shard(s) in flight for up to %.0fs, taking no new ones",
            signal.Signals(signum).name,
            len(self.draining),
            self.grace_s,
        )
        signal.signal(signal.SIGALRM, self._expire)
        signal.setitimer(signal.ITIMER_REAL, self.grace_s)

    def _expire(self, signum: int, frame) -> None:
        log.warning("grace period over: stopping with shards in flight")
        raise Stop(self.signum or signal.SIGTERM)


def _again(signum: int, frame) -> None:
    os._exit(128 + signum)  # the user insists: no cleanup, no traceback


@contextmanager
def stop_on_signals(grace_s: float) -> Iterator[StopRequest]:
    """Within the block, SIGINT raises Stop at once and SIGTERM starts a graceful stop
    (`StopRequest`); any signal after the first exits at once. Outside the main thread
    (a notebook's worker thread) signals are left as they are."""
    request = StopRequest(grace_s)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def first(signum: int, frame) -> None:
        for stop in STOP_SIGNALS:
            signal.signal(stop, _again)
        if signum == signal.SIGTERM:
            request._begin(signum)
        else:
            raise Stop(signum)

    handled = (*STOP_SIGNALS, signal.SIGALRM)
    previous = {sig: signal.getsignal(sig) for sig in handled}
    for stop in STOP_SIGNALS:
        signal.signal(stop, first)
    try:
        yield request
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
