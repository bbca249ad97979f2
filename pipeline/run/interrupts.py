"""Ctrl-C and SIGTERM (what Kubernetes and `ray job stop` send) stop a run cleanly: no
new rows are taken, a commit in flight completes or is abandoned whole (commits are
atomic), the lease is released, and the caller learns how far the run got. A second
signal exits at once."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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


def _first(signum: int, frame) -> None:
    for stop in STOP_SIGNALS:
        signal.signal(stop, _again)
    raise Stop(signum)


def _again(signum: int, frame) -> None:
    os._exit(128 + signum)  # the user insists: no cleanup, no traceback


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise Stop once, then exit at once. Outside
    the main thread (a notebook's worker thread) signals are left as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {stop: signal.getsignal(stop) for stop in STOP_SIGNALS}
    for stop in STOP_SIGNALS:
        signal.signal(stop, _first)
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
