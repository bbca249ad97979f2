"""What the OCR benchmarks share: their command line, timing, and Tesseract."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def timed(read: Callable, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = read(*args)
    return result, time.perf_counter() - started


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


def print_table(corner: str, readers: list[str], rows: list[tuple[str, list[str]]]) -> None:
    """A Markdown table: one column per reader, one row per (name, cells)."""
    print(f"| {corner} | " + " | ".join(readers) + " |")
    print("|---" * (len(readers) + 1) + "|")
    for name, cells in rows:
        print(f"| {name} | " + " | ".join(cells) + " |")
