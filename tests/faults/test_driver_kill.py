"""The driver killed: SIGKILL `shardscribe run` (with its local Ray) at each phase, rerun,
and the output equals a clean run's exactly: nothing lost, nothing duplicated."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.job_config import StorageSettings
from pipeline.output.status import failure_records
from tests.support.processes import still_running
from tests.support.soak import (
    DriverRun,
    KillReport,
    Row,
    clean_run,
    committed_count,
    compare,
    mistakable_strays,
    run_command,
    run_processes,
    write_input,
)

pytestmark = pytest.mark.faults
SHARDS, PER_SHARD = 6, 4
RUN_TIMEOUT_S = 300.0
DONE_LINE = re.compile(r"done: (\d+) shards committed, (\d+) already done, (\d+) failed")


@dataclass(frozen=True)
class CleanRun:
    input_dir: Path
    model: str
    rows: Counter[Row]
    failures: list[tuple]


def _failures(output: Path) -> list[tuple]:
    """The ledger's failed shards and row errors, as `status --failures` lists them."""
    records = failure_records(str(output), StorageSettings())
    return sorted((r["kind"], r["shard"], r["key"], r["error"]) for r in records)


@pytest.fixture(scope="module")
def clean(tiny_model, tmp_path_factory) -> CleanRun:
    """The input, and the rows and ledger records of one run without faults."""
    root = tmp_path_factory.mktemp("driver-kill")
    input_dir = write_input(root / "in", SHARDS, PER_SHARD)
    rows, _ = clean_run(input_dir, root / "clean", tiny_model, RUN_TIMEOUT_S)
    assert sum(rows.values()) == SHARDS * PER_SHARD
    assert sum(row[3] is not None for row in rows.elements()) == 1  # the corrupt image
    return CleanRun(input_dir, tiny_model, rows, _failures(root / "clean"))


def _ray_processes(run: DriverRun, prefix: str) -> list[int]:
    """Pids of the run's processes whose command line contains `prefix`."""
    return [pid for pid, info in run_processes(run.process.pid).items() if prefix in info.command]


@dataclass(frozen=True)
class KillPoint:
    """When to kill a run, polled every few milliseconds with the shards committed when it
    started (`base`), and how many may be committed by then, as (least, most)."""

    condition: Callable[[DriverRun, Path, int], bool]
    committed: Callable[[int], tuple[int, int]]
    survey: bool = True  # list the run's processes before the kill (a few ms later)


KILL_POINTS = {
    # `ray.init` half done: the raylet is up, the generation actor not started yet
    "ray-starting": KillPoint(
        lambda run, out, base: (
            bool(_ray_processes(run, "raylet/raylet")) and not _ray_processes(run, "ray::MapWorker")
        ),
        lambda base: (base, base),
    ),
    # Ray up, the generation actor pool starting, nothing committed by this run yet
    "actor-starting": KillPoint(
        lambda run, out, base: (
            bool(_ray_processes(run, "ray::MapWorker")) and committed_count(out) == base
        ),
        lambda base: (base, base),
    ),
    # a commit just happened: this run's first shard file has appeared (in a fresh output
    # usually shard 00, the one with the corrupt image, whose row error the ledger records
    # right after the file); killed at once, without listing the processes first
    "just-committed": KillPoint(
        lambda run, out, base: committed_count(out) > base,
        lambda base: (base + 1, SHARDS - 1),
        survey=False,
    ),
    # generating: this run has committed a shard, at least half are done, others in flight
    "generating": KillPoint(
        lambda run, out, base: committed_count(out) >= max(base + 1, SHARDS // 2),
        lambda base: (base + 1, SHARDS - 1),
    ),
    # every shard committed, the driver shutting its Ray down
    "all-committed": KillPoint(
        lambda run, out, base: committed_count(out) == SHARDS, lambda base: (SHARDS, SHARDS)
    ),
}


def _file_identities(output: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of each committed file: a rerun must leave them untouched."""
    return {
        path.name: (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in output.glob("*.parquet")
        if not path.name.startswith(".")
    }


def _raylet_pids() -> set[int]:
    """Every raylet on the machine, as `pgrep -f raylet` sees them."""
    found = subprocess.run(["pgrep", "-f", "raylet/raylet"], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def _kill_at(phase: str, command: list[str], output: Path) -> KillReport:
    """Start a run and SIGKILL its process group at `phase`; then nothing of it may remain."""
    point, base = KILL_POINTS[phase], committed_count(output)
    run = DriverRun(command)
    if not run.wait_until(lambda: point.condition(run, output, base), RUN_TIMEOUT_S):
        run.finish(RUN_TIMEOUT_S)
        pytest.fail(f"the run ended before the kill point {phase}:\n{run.stderr()[-3000:]}")
    report = run.kill(committed_count(output), survey=point.survey)
    least, most = point.committed(base)
    assert least <= report.committed <= most, (phase, base, report)
    assert report.orphans == [], f"processes of the killed run outlived it: {report.orphans}"
    assert run_processes(run.process.pid) == {}, "processes of the killed run remain"
    assert not set(report.raylets) & _raylet_pids(), f"raylet {report.raylets} still running"
    print(
        f"{phase}: killed at {report.at_s:.1f}s with {report.committed} committed "
        f"({base} before), {report.processes} processes ({len(report.raylets)} raylet) gone "
        f"{report.settled_s:.1f}s later"
    )
    return report


@pytest.mark.parametrize(
    "phases",
    [("ray-starting", "actor-starting"), ("just-committed", "generating"), ("all-committed",)],
    ids="+".join,
)
def test_killed_driver_then_rerun_gives_the_clean_output_exactly_once(
    phases: tuple[str, ...], clean: CleanRun, tmp_path: Path
):
    """Kill a run at each phase in turn (each run after the first resumes the killed one),
    then rerun to the end."""
    output = tmp_path / "out"
    command = run_command(clean.input_dir, output, clean.model)
    survivors: dict[str, tuple[int, int]] = {}
    for phase in phases:
        report = _kill_at(phase, command, output)
        survivors |= _file_identities(output)

    rerun = DriverRun(command)
    code = rerun.finish(RUN_TIMEOUT_S)
    assert code == 0, rerun.stderr()[-3000:]
    done = DONE_LINE.search(rerun.stderr())
    assert done, rerun.stderr()[-3000:]
    committed_now, already_done, failed = map(int, done.groups())
    assert (committed_now + already_done, failed) == (SHARDS, 0)
    assert already_done >= report.committed  # committed before the kill: not redone

    result = compare(clean.rows, output)
    assert (result.rows_lost, result.rows_duplicated, result.unreadable) == (0, 0, []), result
    assert mistakable_strays(result.strays) == [], result.strays
    print(f"rerun: {rerun.elapsed:.1f}s, {already_done} skipped; strays {result.strays or 'none'}")
    assert {n: i for n, i in _file_identities(output).items() if n in survivors} == survivors
    assert _failures(output) == clean.failures


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_stops_cleanly_and_a_rerun_completes_exactly_once(
    clean: CleanRun, tmp_path: Path, signum: int, exit_code: int
):
    """Ctrl-C or SIGTERM after the first commit: exit 130 / 143 with one line saying how
    far it got, no traceback, the lease released, no process of the run left; a plain
    rerun then gives the clean run's rows exactly once."""
    output = tmp_path / "out"
    command = run_command(clean.input_dir, output, clean.model)
    run = DriverRun(command)
    assert run.wait_until(lambda: committed_count(output) >= 1, RUN_TIMEOUT_S), run.stderr()
    run.process.send_signal(signum)
    assert run.finish(RUN_TIMEOUT_S) == exit_code, run.stderr()[-3000:]
    assert "Traceback" not in run.stderr()
    last = run.stderr().strip().splitlines()[-1]
    assert re.search(
        rf"interrupted: (\d+) of {SHARDS} shards committed; rerun the same command to resume$",
        last,
    ), last
    assert not (output / "_shardscribe" / "lease.json").exists()
    deadline = time.monotonic() + 20  # Ray's own processes take a moment to go
    while run_processes(run.process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run_processes(run.process.pid) == {}
    rerun = DriverRun(command)
    assert rerun.finish(RUN_TIMEOUT_S) == 0, rerun.stderr()[-3000:]
    assert compare(clean.rows, output).exact


def test_a_driver_killed_alone_leaves_no_process_of_its_ray(clean: CleanRun, tmp_path: Path):
    """SIGKILL the driver only, not its process group (an OOM kill, `kill -9 PID`): the
    local Ray it started (GCS, raylet, agents, workers) is gone within seconds."""
    run = DriverRun(run_command(clean.input_dir, tmp_path / "out", clean.model))
    processes = {}

    def generating() -> bool:
        # surveyed while the actor runs, not after a commit: six small shards may all be
        # done by then, and a driver shutting its Ray down has no raylet left to see
        nonlocal processes
        processes = run_processes(run.process.pid)
        commands = [info.command for info in processes.values()]
        return any("ray::MapWorker" in c for c in commands) and any(
            "raylet/raylet" in c for c in commands
        )

    assert run.wait_until(generating, RUN_TIMEOUT_S, poll=0.05), run.stderr()
    run.process.kill()
    run.process.wait()
    deadline = time.monotonic() + 15
    while (left := [info for info in processes.values() if still_running(info)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    for info in left:  # not to leave them to the rest of the session
        os.kill(info.pid, signal.SIGKILL)
    assert [info.command[:80] for info in left] == []
