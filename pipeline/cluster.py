"""Ray for both runs and training: join the cluster or start a local one, and share the
cluster's CPUs out as torch threads."""

from __future__ import annotations

import logging
import os
import signal
import threading

import ray
from ray.data import DataContext

from pipeline.reaper import start_reaper


def connect_ray(address: str | None, dashboard: bool = False, verbose: bool = False) -> None:
    """Join the cluster (config, then RAY_ADDRESS, as inside `ray job submit`), or start
    a local Ray when there is none, with the dashboard when asked (Ray Train watches its
    controller through the state API, which the dashboard serves). Ray's own notes are
    left out unless `verbose`."""
    level = logging.INFO if verbose else logging.WARNING
    if not verbose:
        _quiet_ray_notes()
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        # ray.init makes SIGTERM exit the driver at once; keep the caller's handling.
        sigterm = signal.getsignal(signal.SIGTERM) if _main_thread() else None
        if address:
            ray.init(address=address, logging_level=level)
        else:
            start_reaper()  # this Ray is ours: none of it outlives us
            ray.init(include_dashboard=dashboard, logging_level=level)
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    context = DataContext.get_current()
    context.enable_progress_bars = False  # our own progress reporting replaces Ray's bars
    context.print_on_execution_start = False


def prepare_ray_data() -> None:
    """Have Ray Data's cluster-wide helpers (its stats actor and autoscaling coordinator)
    exist before a run's own dataset starts: the first dataset on a Ray creates them
    inside its start-up, before its actors (about 1.5 s of a run's start-up on 2 cores,
    measured). They are detached actors, so a cluster makes them once; a one-row dataset
    is the public way to have them made. Its task asks for no CPU, so it runs at once
    even on a cluster whose CPUs are all taken, and warms a worker for the reads."""
    ray.data.from_items([{"row": 0}]).map_batches(_unchanged, num_cpus=0).materialize()


def _unchanged(batch):
    return batch


# Ray's notes that are about Ray, not about the run: "Progress bars disabled" (we draw our
# own), "Dataset ... execution finished", "Token authentication is enabled". Ray's
# warnings about real problems (resources, retries) keep their level.
_NOTES = {
    "ray.data._internal.progress": logging.ERROR,
    "ray.data._internal.execution.streaming_executor": logging.WARNING,
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
}


def _quiet_ray_notes() -> None:
    for name, level in _NOTES.items():
        logging.getLogger(name).setLevel(level)
    executor_state = logging.getLogger("ray.data._internal.execution.streaming_executor_state")
    if not any(isinstance(f, _LostBlockLine) for f in executor_state.filters):
        executor_state.addFilter(_LostBlockLine())


class _LostBlockLine(logging.Filter):
    """A block Ray gave up on (its actor or node died) is a shard the runner redoes, not a
    failure: one warning line naming the cause instead of Ray's error and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "Ignoring this exception" in str(record.msg) and record.exc_info:
            error = record.exc_info[1]
            cause = str(error).strip().splitlines()[0] if str(error).strip() else ""
            record.msg = "lost a block (%s: %s); its shard is redone in the next pass"
            record.args = (type(error).__name__, cause[:200])
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def shared_cpu_threads(consumers: int, keep_free: int = 0) -> int:
    """Torch threads for each of `consumers` CPU processes: the cluster's CPUs shared out,
    less `keep_free` each (Ray alone would give each only the CPUs it reserves)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // consumers - keep_free)
