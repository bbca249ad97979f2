"""What the OCR benchmarks share: their command line, timing, and Tesseract."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.support.processes import all_processes, with_descendants


def timed(read: Callable, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = read(*args)
    return result, time.perf_counter() - started


def process_role(is_root: bool, command: str) -> str:
    """What a process of a run is: the driver, the generation actor, Ray Data's tasks
    (reading, decoding, segmenting) or Ray's own daemons."""
    if is_root:
        return "driver"
    if command.startswith("ray::"):  # a worker names itself by what it last ran
        return "actor" if "MapWorker" in command else "tasks"
    return "ray daemons"


def run_sampled(command: list[str], every_s: float = 0.25) -> tuple[int, str, dict[str, float]]:
    """Run `command`, sampling its process tree from /proc until it exits; (exit code,
    stderr, CPU seconds by `process_role`). Each process counts with its own CPU as last
    seen, so one that ends between samples loses at most `every_s` of it."""
    seen: dict[tuple[int, int], tuple[str, float]] = {}
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        while process.poll() is None:
            table = all_processes()
            for pid in with_descendants(table, {process.pid}):
                info = table[pid]
                role = process_role(pid == process.pid, info.command)
                seen[(pid, info.started)] = (role, info.own_cpu_s)
            time.sleep(every_s)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    cpu: dict[str, float] = defaultdict(float)
    for role, seconds in seen.values():
        cpu[role] += seconds
    return process.returncode, stderr, dict(cpu)


def tesseract(paths: list[Path], psm: int, cores: int) -> list[str]:
    """Tesseract 5 on each image, one process per image and one per core at a time."""

    def read(path: Path) -> str:
        result = subprocess.run(
            ["tesseract", str(path), "stdout", "--psm", str(psm), "-l", "eng"],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ | {"OMP_THREAD_LIMIT": "1"},
        )
        return result.stdout

    with ThreadPoolExecutor(cores) as pool:
        return list(pool.map(read, paths))


def main(doc: str, add_arguments: Callable, run: Callable, print_tables: Callable) -> None:
    """Parse the common options (models, batch, cores, pipeline, JSON) and the
    benchmark's own, run it, print its tables or one JSON object."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        help="model to read with, as PATH or LABEL=PATH; repeatable (default: the bundled one)",
    )
    add_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=32, help="bare generate batch")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--skip-pipeline", action="store_true", help="no `shardscribe run` end to end"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    args.model = args.model or ["shardscribe/printed-lines"]
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_tables(result)


def labelled(given: str) -> tuple[str, str]:
    """LABEL=PATH or PATH -> (label, path)."""
    label, _, model = given.rpartition("=")
    return label or model, model


def markdown_table(corner: str, readers: list[str], rows: list[tuple[str, list[str]]]) -> str:
    """A Markdown table: one column per reader, one row per (name, cells)."""
    lines = [f"| {corner} | " + " | ".join(readers) + " |", "|---" * (len(readers) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(lines)


def print_table(corner: str, readers: list[str], rows: list[tuple[str, list[str]]]) -> None:
    print(markdown_table(corner, readers, rows))
