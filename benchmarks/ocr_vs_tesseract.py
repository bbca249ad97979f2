"""OCR quality and speed of a line model against Tesseract, on the same line images.

The lines are text no training line came from (prose from Debian's licence and
copyright files, plus numbers, dates, prices, phone numbers and codes made from
held-out words) in font families held out of training (`jobs.fonts`), at 32-48 px,
1-100 characters; each line clean (black on white) and scan-like (`jobs.synth.degrade`).
Every image is read by:

- the model, bare: batched `generate` in this process (`--batch-size`, torch threads =
  cores);
- the model, end to end: `shardscribe run` on a WebDataset shard of the images, as a
  fresh process (Ray start-up and model load included);
- Tesseract 5 (`tesseract-ocr` + `tesseract-ocr-eng`): `--psm 7` (one text line), one
  process per image, one per core at a time, `OMP_THREAD_LIMIT=1`.

Printed: CER and exact-line rate per length bucket, per held-out font family, clean
and degraded; lines/s per core for each reader; outputs longer than 1.5x their
reference (repeat loops). `--json` prints one JSON object instead.

    python -m benchmarks.ocr_vs_tesseract [--model shardscribe/printed-lines] [--lines 240]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as ds
import torch
from PIL import Image, ImageDraw, ImageFont

from jobs.fonts import font_split, installed_families
from jobs.synth import degrade
from jobs.texts import evaluation_paragraphs, fill_line, prose_line, structured_token, word_list
from model.loading import load_model
from model.metrics import ErrorCounts
from model.settings import ModelSettings
from pipeline.inputs.webdataset import write_tar
from pipeline.training.objective import recognise

SEED = 20261201
BUCKETS = ((1, 20), (21, 40), (41, 70), (71, 100))


@dataclass(frozen=True)
class Line:
    key: str
    text: str
    family: str
    degraded: bool
    image: Image.Image


def _text(rng: random.Random, length: int) -> str:
    if rng.random() < 0.7:
        return prose_line(evaluation_paragraphs(), rng, length)
    words = word_list("heldout")
    tokens: list[str] = []
    while sum(len(t) + 1 for t in tokens) < length:
        tokens.append(structured_token(rng, words) if rng.random() < 0.6 else rng.choice(words))
    return fill_line(tokens, length)


def _render(text: str, path: str, size: int, rng: random.Random) -> Image.Image:
    font = ImageFont.truetype(path, size)
    left, top, right, bottom = font.getbbox(text)
    pad_x, pad_y = rng.randint(size // 4, size), rng.randint(size // 8, size // 3)
    image = Image.new("L", (right - left + 2 * pad_x, bottom - top + 2 * pad_y), 255)
    ImageDraw.Draw(image).text((pad_x - left, pad_y - top), text, fill=0, font=font)
    return image


def make_lines(count: int) -> list[Line]:
    """`count` texts spread evenly over the length buckets, each clean and degraded."""
    rng = random.Random(SEED)
    families = font_split(installed_families(), "heldout")
    if not families:
        sys.exit("no held-out font family is installed: run infra/install-fonts.sh")
    lines = []
    for i in range(count):
        low, high = BUCKETS[i % len(BUCKETS)]
        text = ""
        while not low <= len(text) <= high:
            text = _text(rng, rng.randint(low, high)).strip()
        family = sorted(families)[i % len(families)]
        clean = _render(text, rng.choice(families[family]), rng.randint(32, 48), rng)
        lines.append(Line(f"{i:05d}-clean", text, family, False, clean))
        lines.append(Line(f"{i:05d}-degraded", text, family, True, degrade(clean, rng)))
    return lines


def read_bare(model: str, lines: list[Line], batch_size: int, cores: int) -> list[str]:
    torch.set_num_threads(cores)
    loaded = load_model(ModelSettings(name=model))
    budget = loaded.model.generation_config.max_new_tokens or 128
    texts: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(lines), batch_size):
            images = [line.image.convert("RGB") for line in lines[start : start + batch_size]]
            pixels = loaded.image_processor(images=images, return_tensors="pt").pixel_values
            texts += recognise(loaded.model, loaded.tokenizer, pixels, budget)
    return texts


def read_pipeline(model: str, lines: list[Line], scratch: Path) -> list[str]:
    """`shardscribe run` over one WebDataset shard of the images, in a fresh process."""
    (scratch / "input").mkdir()
    members = []
    for line in lines:
        png = io.BytesIO()
        line.image.save(png, "PNG")
        members.append((f"{line.key}.png", png.getvalue()))
    with open(scratch / "input" / "lines.tar", "wb") as file:
        write_tar(file, members)
    command = [sys.executable, "-m", "jobs", "run", "--input", str(scratch / "input")]
    command += ["--output", str(scratch / "output"), "--model", model]
    subprocess.run(command, check=True, capture_output=True)
    rows = ds.dataset(scratch / "output", format="parquet").to_table().to_pylist()
    by_key = {row["key"]: row["text"] or "" for row in rows}
    return [by_key[line.key] for line in lines]


def _tesseract(path: Path) -> str:
    result = subprocess.run(
        ["tesseract", str(path), "stdout", "--psm", "7", "-l", "eng"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"OMP_THREAD_LIMIT": "1"},
    )
    return result.stdout.strip()


def read_tesseract(lines: list[Line], scratch: Path, cores: int) -> list[str]:
    paths = []
    for line in lines:
        paths.append(scratch / f"{line.key}.png")
        line.image.save(paths[-1])
    with ThreadPoolExecutor(cores) as pool:
        return list(pool.map(_tesseract, paths))


def score(lines: list[Line], texts: list[str]) -> dict:
    """CER / exact lines overall, per bucket, per family, clean and degraded; loops."""
    groups: dict[str, ErrorCounts] = defaultdict(ErrorCounts)
    for line, text in zip(lines, texts, strict=True):
        bucket = next(f"{lo}-{hi}" for lo, hi in BUCKETS if lo <= len(line.text) <= hi)
        condition = "degraded" if line.degraded else "clean"
        for group in ("all", condition, f"{condition} {bucket}", f"{condition} {line.family}"):
            groups[group].add([text], [line.text])
    loops = sum(len(t) > 1.5 * len(line.text) for line, t in zip(lines, texts, strict=True))
    return {
        "groups": {
            name: {"cer": round(c.cer, 4), "exact": round(c.exact_match, 3), "lines": c.lines}
            for name, c in sorted(groups.items())
        },
        "longer_than_1.5x": loops,
    }


def timed(read, *args) -> tuple[list[str], float]:
    started = time.perf_counter()
    texts = read(*args)
    return texts, time.perf_counter() - started


def run(args: argparse.Namespace) -> dict:
    lines = make_lines(args.lines)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        readers = {"tesseract": (read_tesseract, lines, Path(scratch), args.cores)}
        if shutil.which("tesseract") is None:
            sys.exit("tesseract is not installed: run infra/install-fonts.sh (it installs it)")
        for given in args.model:
            label, _, model = given.rpartition("=")
            label = label or model
            readers[f"{label} bare"] = (read_bare, model, lines, args.batch_size, args.cores)
            if not args.skip_pipeline:
                work = Path(tempfile.mkdtemp(dir=scratch))
                readers[f"{label} run"] = (read_pipeline, model, lines, work)
        for name, (read, *read_args) in readers.items():
            texts, seconds = timed(read, *read_args)
            results[name] = score(lines, texts) | {
                "lines_per_s_per_core": round(len(lines) / seconds / args.cores, 2),
                "seconds": round(seconds, 1),
            }
    return {"lines": len(lines), "cores": args.cores, "readers": results}


def print_tables(result: dict) -> None:
    readers = result["readers"]
    names = list(readers)
    groups = list(next(iter(readers.values()))["groups"])
    print(f"{result['lines']} line images, {result['cores']} core(s); CER (exact lines)\n")
    print("| lines | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for group in groups:
        cells = [
            f"{r['groups'][group]['cer']:.2%} ({r['groups'][group]['exact']:.0%})"
            for r in readers.values()
        ]
        print(f"| {group} | " + " | ".join(cells) + " |")
    speed = [f"{r['lines_per_s_per_core']}" for r in readers.values()]
    loops = [str(r["longer_than_1.5x"]) for r in readers.values()]
    print("| lines/s per core | " + " | ".join(speed) + " |")
    print("| outputs > 1.5x reference | " + " | ".join(loops) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        help="model to read with, as PATH or LABEL=PATH; repeatable (default: the bundled one)",
    )
    parser.add_argument("--lines", type=int, default=240, help="texts (each clean and degraded)")
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


if __name__ == "__main__":
    main()
