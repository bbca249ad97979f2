"""Driver-kill soak: SIGKILL `shardscribe run` at random moments, rerun, compare with a clean run.

    python -m tests.support.soak --cycles 20 [--shards N] [--images-per-shard N] [--seed S]

It builds its input (WebDataset shards, one corrupt image so row errors are compared too)
and a tiny model in a temporary folder, times a clean run, then runs cycles on one output
(deleted only at the start of the soak). A cycle starts `shardscribe run` in its own
session and SIGKILLs its process group after a random delay (seeded) between 0 and the
clean run's duration; the next cycle reruns on the same output, so kills also land in
resumed runs. A run that completes before its kill is compared with the clean run and its
output is reset for the next cycle. After the last cycle a final rerun completes the output
and it is compared too. Every kill checks that no process of the killed run (raylet, GCS,
workers) outlives it. Figures: a table and one JSON line on stdout.

This module also holds the machinery that `test_driver_kill.py` uses: the subprocess
wrapper, the process-group kill and the output comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from tests.support.data import sample_images, webdataset_members, write_tar
from tests.support.processes import (
    ProcessInfo,
    all_processes,
    process_info,
    still_running,
    with_descendants,
)

log = logging.getLogger("soak")
REPO = Path(__file__).resolve().parents[2]
LEDGER_DIR = "_shardscribe"
CORRUPT_IMAGE = b"this is not an image"
#: Seconds the processes of a killed run get to go away before they count as orphans.
ORPHAN_GRACE_S = 20.0
Row = tuple[str, str, str | None, str | None]


# -- input -------------------------------------------------------------------------------


def write_input(root: Path, shards: int, per_shard: int) -> Path:
    """`shards` WebDataset tars of `per_shard` images under `root`; the second image of
    shard 00 is corrupt, so its row carries a `decode:` error."""
    for shard in range(shards):
        members = webdataset_members(sample_images(per_shard, offset=shard * per_shard))
        if shard == 0 and per_shard > 1:
            members[f"s{1:04d}.png"] = CORRUPT_IMAGE
        write_tar(root / f"{shard:02d}.tar", members)
    return root


def run_command(input_dir: Path, output: Path, model: str) -> list[str]:
    """The `shardscribe run` command line every run of the tests and the soak uses."""
    return [
        sys.executable,
        "-m",
        "jobs",
        "run",
        "--input",
        str(input_dir),
        "--output",
        str(output),
        "--model",
        model,
        "--max-new-tokens",
        "6",
        "--batch-size",
        "2",
        "--log-interval-s",
        "1",
    ]


def _run_env() -> dict[str, str]:
    """The caller's environment without RAY_ADDRESS, so every run starts its own local Ray."""
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


# -- processes ---------------------------------------------------------------------------


def run_processes(leader: int) -> dict[int, ProcessInfo]:
    """The live processes of the run whose driver is `leader`: its session (Ray's workers
    leave the driver's process group but keep its session) and all its descendants."""
    table = {pid: info for pid, info in all_processes().items() if not info.zombie}
    roots = {pid for pid, info in table.items() if info.session == leader or pid == leader}
    return {pid: table[pid] for pid in with_descendants(table, roots)}


@dataclass
class KillReport:
    """What one SIGKILL of a run's process group hit and left behind."""

    at_s: float
    committed: int
    processes: int  # of the run, seen just before (with `survey`) or after the kill
    raylets: list[int]  # their pids
    settled_s: float = 0.0  # from the kill until the last of them was gone
    orphans: list[str] = field(default_factory=list)


class DriverRun:
    """`shardscribe run` as a subprocess in its own session, stderr collected line by line."""

    def __init__(self, command: list[str], ray_env: dict[str, str] | None = None):
        """`ray_env`: the variables that join a Ray cluster (RAY_ADDRESS, its token, and
        the store's credentials); without it the run starts its own local Ray."""
        self.command = command
        self.start = time.monotonic()
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            cwd=REPO,
            env=_run_env() | (ray_env or {}),
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stderr(self) -> str:
        return "".join(self.lines)

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def wait_until(
        self, condition: Callable[[], bool], timeout: float, poll: float = 0.005
    ) -> bool:
        """Poll `condition` while the run is running; True once it holds, False when the run
        ended or `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(poll)
        return False

    def finish(self, timeout: float) -> int:
        """Wait for the run to exit on its own; its exit code. A run still going after
        `timeout` is killed (with its Ray) and raises TimeoutError."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(committed=-1)
            tail = self.stderr()[-3000:]
            raise TimeoutError(f"run did not finish in {timeout:.0f}s:\n{tail}") from None
        self._reader.join(timeout=10)
        return code

    def kill(self, committed: int, survey: bool = True) -> KillReport:
        """SIGKILL the driver's process group, then make sure every process of the run is
        gone: the ones outside the group (Ray's workers) must exit once their raylet is
        dead; any still alive after ORPHAN_GRACE_S is reported and killed by its pid.
        With `survey`, the run's processes are listed first (a few ms later kill)."""
        at_s = self.elapsed
        before = run_processes(self.process.pid) if survey else {}
        with contextlib.suppress(ProcessLookupError):  # the whole group already exited
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._reader.join(timeout=10)
        suspects = before | run_processes(self.process.pid)
        raylets = [pid for pid, info in suspects.items() if "raylet/raylet" in info.command]
        report = KillReport(at_s, committed, len(suspects), raylets)
        killed = time.monotonic()
        deadline = killed + ORPHAN_GRACE_S
        while any(map(still_running, suspects.values())) and time.monotonic() < deadline:
            time.sleep(0.05)
        report.settled_s = time.monotonic() - killed
        for info in filter(still_running, suspects.values()):
            now = process_info(info.pid) or info
            report.orphans.append(f"{info.pid} {now.command[:120]}")
            os.kill(info.pid, signal.SIGKILL)
        return report


# -- output ------------------------------------------------------------------------------


def _relative_files(output: Path) -> list[Path]:
    if not output.exists():
        return []
    return sorted(path.relative_to(output) for path in output.rglob("*") if path.is_file())


def _is_output(relative: Path) -> bool:
    """A committed shard file, as `committed_files` would list it."""
    return (
        relative.suffix == ".parquet"
        and relative.parts[0] != LEDGER_DIR
        and not relative.name.startswith(".")
    )


def committed_count(output: Path) -> int:
    """How many shard files are committed under `output` right now (cheap, for polling)."""
    try:
        return sum(
            1 for e in os.scandir(output) if e.name.endswith(".parquet") and e.name[0] != "."
        )
    except FileNotFoundError:
        return 0


def stray_files(output: Path) -> list[str]:
    """Files under `output` that are neither committed shard files nor ledger records:
    temporaries left by a killed write (hidden `.<name>.<hex>.tmp`) or anything else."""
    return [
        str(relative)
        for relative in _relative_files(output)
        if not _is_output(relative)
        and (relative.parts[0] != LEDGER_DIR or relative.name.startswith("."))
    ]


def mistakable_strays(strays: list[str]) -> list[str]:
    """Strays that a reader could take for outputs: not hidden, or named *.parquet."""
    return [s for s in strays if not Path(s).name.startswith(".") or s.endswith(".parquet")]


def read_rows(output: Path) -> tuple[Counter[Row], list[str]]:
    """The multiset of (shard, key, text, error) over every committed file, and the files
    pyarrow cannot read."""
    rows: Counter[Row] = Counter()
    unreadable = []
    for relative in filter(_is_output, _relative_files(output)):
        try:
            table = pq.read_table(output / relative, columns=["shard", "key", "text", "error"])
        except Exception as error:  # any failure to read is the finding
            unreadable.append(f"{relative}: {type(error).__name__}: {error}")
            continue
        rows.update(tuple(row.values()) for row in table.to_pylist())
    return rows, unreadable


@dataclass
class Comparison:
    """An output against the clean run's rows."""

    rows_expected: int
    rows_lost: int
    rows_duplicated: int
    unreadable: list[str]
    strays: list[str]

    @property
    def exact(self) -> bool:
        return not (self.rows_lost or self.rows_duplicated or self.unreadable)


def compare(expected: Counter[Row], output: Path) -> Comparison:
    """Rows missing from the output (lost) and rows beyond the clean run's (duplicated,
    or changed: a changed row counts as one lost and one duplicated)."""
    rows, unreadable = read_rows(output)
    return Comparison(
        rows_expected=sum(expected.values()),
        rows_lost=sum((expected - rows).values()),
        rows_duplicated=sum((rows - expected).values()),
        unreadable=unreadable,
        strays=stray_files(output),
    )


def clean_run(input_dir: Path, output: Path, model: str, timeout: float) -> tuple[Counter, float]:
    """Run once without faults; the rows and the run's duration in seconds."""
    run = DriverRun(run_command(input_dir, output, model))
    code = run.finish(timeout)
    if code != 0:
        raise RuntimeError(f"clean run exited {code}:\n{run.stderr()[-3000:]}")
    rows, unreadable = read_rows(output)
    if unreadable:
        raise RuntimeError(f"clean run wrote unreadable files: {unreadable}")
    return rows, run.elapsed


# -- soak --------------------------------------------------------------------------------


@dataclass
class SoakFigures:
    cycles: int
    seed: int
    shards: int
    clean_run_s: float
    rows_expected: int
    kills: int = 0
    kill_times_s: list[float] = field(default_factory=list)
    committed_at_kills: list[int] = field(default_factory=list)
    completions: int = 0
    failed_runs: int = 0
    rows_checked: int = 0
    rows_lost: int = 0
    rows_duplicated: int = 0
    files_unreadable: int = 0
    leftover_temporaries: list[str] = field(default_factory=list)
    mistakable_files: list[str] = field(default_factory=list)
    orphaned_processes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not (
            self.rows_lost
            or self.rows_duplicated
            or self.files_unreadable
            or self.failed_runs
            or self.mistakable_files
            or self.orphaned_processes
        )


class Soak:
    """The cycles on one output, and the figures they add up to."""

    def __init__(self, workdir: Path, input_dir: Path, model: str, figures: SoakFigures):
        self.output = workdir / "out"
        self.command = run_command(input_dir, self.output, model)
        self.figures = figures
        self.expected: Counter[Row] = Counter()
        self.run_timeout = max(300.0, 10 * figures.clean_run_s)

    def cycle(self, number: int, delay: float) -> None:
        """One run on the output, killed after `delay` seconds unless it completes first."""
        run = DriverRun(self.command)
        run.wait_until(lambda: False, timeout=delay, poll=0.05)
        if run.running:
            report = run.kill(committed_count(self.output))
            self._record_kill(number, report)
        else:
            self._complete(run, number)

    def finish(self) -> None:
        """Rerun until the output is complete, when the last cycle ended with a kill."""
        if self.figures.kills and committed_count(self.output) < self.figures.shards:
            self._complete(DriverRun(self.command), self.figures.cycles)

    def _record_kill(self, number: int, report: KillReport) -> None:
        figures = self.figures
        figures.kills += 1
        figures.kill_times_s.append(round(report.at_s, 2))
        figures.committed_at_kills.append(report.committed)
        figures.orphaned_processes += report.orphans
        log.info(
            "cycle %d: killed at %.2fs with %d/%d shards committed (%d processes, %d raylet, "
            "all gone %.1fs later)%s",
            number,
            report.at_s,
            report.committed,
            figures.shards,
            report.processes,
            len(report.raylets),
            report.settled_s,
            f"; ORPHANS killed: {report.orphans}" if report.orphans else "",
        )

    def _complete(self, run: DriverRun, number: int) -> None:
        """Let a run end, compare its output with the clean run, reset the output."""
        figures = self.figures
        code = run.finish(self.run_timeout)
        figures.completions += 1
        if code != 0:
            figures.failed_runs += 1
            log.error("cycle %d: run exited %d:\n%s", number, code, run.stderr()[-3000:])
        result = compare(self.expected, self.output)
        figures.rows_checked += result.rows_expected
        figures.rows_lost += result.rows_lost
        figures.rows_duplicated += result.rows_duplicated
        figures.files_unreadable += len(result.unreadable)
        figures.leftover_temporaries += result.strays
        figures.mistakable_files += mistakable_strays(result.strays)
        log.info(
            "cycle %d: run completed (exit %d) in %.1fs: %d rows lost, %d duplicated, "
            "%d unreadable, strays %s",
            number,
            code,
            run.elapsed,
            result.rows_lost,
            result.rows_duplicated,
            len(result.unreadable),
            result.strays or "none",
        )
        shutil.rmtree(self.output, ignore_errors=True)


def _table(figures: SoakFigures) -> str:
    rows = [
        ("cycles", figures.cycles),
        ("kills injected", figures.kills),
        ("kill times (s)", ", ".join(f"{t:.1f}" for t in figures.kill_times_s) or "-"),
        ("shards committed at kills", ", ".join(map(str, figures.committed_at_kills)) or "-"),
        ("runs completed", figures.completions),
        ("runs failed (exit != 0)", figures.failed_runs),
        ("rows expected per output", figures.rows_expected),
        ("rows checked", figures.rows_checked),
        ("rows lost", figures.rows_lost),
        ("rows duplicated", figures.rows_duplicated),
        ("files unreadable", figures.files_unreadable),
        ("leftover temporaries", len(figures.leftover_temporaries)),
        ("files mistakable for outputs", len(figures.mistakable_files)),
        ("orphaned processes", len(figures.orphaned_processes)),
        ("clean run (s)", f"{figures.clean_run_s:.1f}"),
        ("total wall time (s)", f"{figures.wall_s:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def soak(cycles: int, shards: int, per_shard: int, seed: int, workdir: Path) -> SoakFigures:
    """Build the input and model, time a clean run, then run the cycles."""
    from model import build_tiny_model

    start = time.monotonic()
    input_dir = write_input(workdir / "in", shards, per_shard)
    model = str(build_tiny_model(workdir / "model"))
    log.info("clean run: %d shards x %d images", shards, per_shard)
    expected, clean_s = clean_run(input_dir, workdir / "clean", model, timeout=600)
    figures = SoakFigures(cycles, seed, shards, round(clean_s, 2), sum(expected.values()))
    log.info("clean run: %d rows in %.1fs", figures.rows_expected, clean_s)
    runner = Soak(workdir, input_dir, model, figures)
    runner.expected = expected
    shutil.rmtree(runner.output, ignore_errors=True)
    rng = random.Random(seed)
    for number in range(cycles):
        runner.cycle(number, rng.uniform(0, clean_s))
    runner.finish()
    figures.wall_s = round(time.monotonic() - start, 1)
    return figures


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.support.soak", description=__doc__)
    parser.add_argument("--cycles", type=int, default=20, help="runs killed at random moments")
    parser.add_argument("--shards", type=int, default=6, help="WebDataset shards in the input")
    parser.add_argument("--images-per-shard", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill delays")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 0 when every output matched the clean run and nothing leaked."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = _arguments(argv)
    workdir = Path(tempfile.mkdtemp(prefix="shardscribe-soak-"))
    try:
        figures = soak(args.cycles, args.shards, args.images_per_shard, args.seed, workdir)
    finally:
        if args.keep:
            log.info("kept %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(_table(figures))
    print(json.dumps({"ok": figures.ok, **asdict(figures)}))
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
