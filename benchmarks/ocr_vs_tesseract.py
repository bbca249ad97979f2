"""OCR quality and speed of a line model against Tesseract, on the same line images.

The lines are text no training line came from (prose from Debian's licence and
copyright files, plus numbers, dates, prices, phone numbers and codes made from
held-out words) in font families held out of training (`pipeline.synthetic.fonts`), at 32-48 px,
1-100 characters; each line clean (black on white) and scan-like
(`pipeline.synthetic.lines.degrade`).
Three harder cases come beside them, clean, one for every fourth text: `tall` (16-24 px
text in a crop it fills 40-75 % of the height, at any offset, as hand-made crops are),
`digits` (numbers, dates, prices and codes between held-out words) and `doubled` (prose
with two or more doubled letters: `carry`, `goodwill`, `1996`). With `--kinds N`, N texts
more for each kind of hard scan (`pipeline.synthetic.degradations`: small, blurred,
crushed, noisy, faint, turned, binarised, bleeding, all at once, and bold or italic faces
of the held-out families), in rows of their own. Every image is read by:

- the model, bare: batched `generate` in this process (`--batch-size`, torch threads =
  cores);
- the model, end to end: `shardscribe run` on a WebDataset shard of the images, as a
  fresh process (Ray start-up and model load included);
- both greedy, or with `--num-beams N` beam search (`run --num-beams N`);
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
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as ds
import torch
from PIL import Image, ImageFont

from benchmarks.harness import labelled, main, markdown_table, tesseract, timed
from model.loading import load_model
from model.metrics import ErrorCounts
from model.settings import ModelSettings
from pipeline.inputs.webdataset import write_tar
from pipeline.synthetic.degradations import KINDS, all_at_once
from pipeline.synthetic.drawing import draw_text
from pipeline.synthetic.fonts import font_split, installed_families
from pipeline.synthetic.lines import degrade
from pipeline.synthetic.texts import (
    evaluation_paragraphs,
    fill_line,
    numeric_line,
    prose_line,
    structured_token,
    word_list,
)
from pipeline.training.objective import recognise

SEED = 20261201
BUCKETS = ((1, 20), (21, 40), (41, 70), (71, 100))


CASES = ("clean", "degraded", "tall", "digits", "doubled")
DOUBLED = re.compile(r"([A-Za-z0-9])\1")


@dataclass(frozen=True)
class Line:
    key: str
    text: str
    family: str
    case: str  # one of CASES, or a kind of hard scan
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
    pad_x, pad_y = rng.randint(size // 4, size), rng.randint(size // 8, size // 3)
    return draw_text(text, ImageFont.truetype(path, size), (pad_x, pad_y, pad_x, pad_y))


def _tall(text: str, path: str, rng: random.Random) -> Image.Image:
    """Small text in a tall crop: the glyphs fill 40-75 % of the height, anywhere in it."""
    font = ImageFont.truetype(path, rng.randint(16, 24))
    _, top, _, bottom = font.getbbox(text)
    spare = round((bottom - top) / rng.uniform(0.4, 0.75)) - (bottom - top)
    above, pad_x = rng.randint(0, spare), rng.randint(4, 16)
    return draw_text(text, font, (pad_x, above, pad_x, spare - above))


def _case_text(case: str, rng: random.Random, length: int) -> str:
    if case == "digits":
        return numeric_line(rng, word_list("heldout"), length)
    if case == "doubled":
        text = ""
        while len(DOUBLED.findall(text)) < 2:
            text = prose_line(evaluation_paragraphs(), rng, length)
        return text
    return _text(rng, length)


def _sized_text(case: str, rng: random.Random, low: int, high: int) -> str:
    text = ""
    while not low <= len(text) <= high:
        text = _case_text(case, rng, rng.randint(low, high)).strip()
    return text


def make_kind_lines(count: int) -> list[Line]:
    """`count` texts of 10-70 characters for each kind of hard scan
    (`pipeline.synthetic.degradations`: each on its own, all at once, and bold or italic
    faces of the held-out families), rendered clean at 32-48 px, then degraded."""
    rng = random.Random(SEED + 7)
    families = font_split(installed_families(), "heldout")
    names = sorted(families)
    kinds = {**KINDS, "all at once": all_at_once, "bold or italic": None}
    lines = []
    for kind, degradation in kinds.items():
        for i in range(count):
            text = _sized_text("clean", rng, 10, 70)
            family = names[i % len(names)]
            faces = families[family]
            if degradation is None:
                styled = [p for p in faces if re.search(r"bold|italic|oblique", p, re.I)]
                faces = styled or faces
            image = _render(text, rng.choice(faces), rng.randint(32, 48), rng).convert("L")
            if degradation is not None:
                image = degradation(image, rng)
            lines.append(Line(f"{i:05d}-{kind.replace(' ', '-')}", text, family, kind, image))
    return lines


def make_lines(count: int) -> list[Line]:
    """`count` texts spread evenly over the length buckets, each clean and degraded; and
    `count // 4` of each harder case (tall, digits, doubled), 10-70 characters."""
    rng = random.Random(SEED)
    families = font_split(installed_families(), "heldout")
    if not families:
        sys.exit("no held-out font family is installed: run infra/install-fonts.sh")
    names = sorted(families)
    lines = []
    for i in range(count):
        text = _sized_text("clean", rng, *BUCKETS[i % len(BUCKETS)])
        family = names[i % len(names)]
        clean = _render(text, rng.choice(families[family]), rng.randint(32, 48), rng)
        lines.append(Line(f"{i:05d}-clean", text, family, "clean", clean))
        lines.append(Line(f"{i:05d}-degraded", text, family, "degraded", degrade(clean, rng)))
    for case in CASES[2:]:
        for i in range(count // 4):
            text = _sized_text(case, rng, 10, 70)
            family = names[i % len(names)]
            path = rng.choice(families[family])
            image = _tall(text, path, rng) if case == "tall" else _render(text, path, 36, rng)
            lines.append(Line(f"{i:05d}-{case}", text, family, case, image))
    return lines


def read_bare(
    model: str, lines: list[Line], batch_size: int, cores: int, num_beams: int
) -> list[str]:
    torch.set_num_threads(cores)
    loaded = load_model(ModelSettings(name=model))
    budget = loaded.model.generation_config.max_new_tokens or 128
    texts: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(lines), batch_size):
            images = [line.image.convert("RGB") for line in lines[start : start + batch_size]]
            pixels = loaded.image_processor(images=images, return_tensors="pt").pixel_values
            texts += recognise(
                loaded.model, loaded.tokenizer, pixels, budget, num_beams, loaded.ctc_head
            )
    return texts


def read_pipeline(model: str, lines: list[Line], scratch: Path, num_beams: int) -> list[str]:
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
    command += ["--num-beams", str(num_beams)]
    subprocess.run(command, check=True, capture_output=True)
    rows = ds.dataset(scratch / "output", format="parquet").to_table().to_pylist()
    by_key = {row["key"]: row["text"] or "" for row in rows}
    return [by_key[line.key] for line in lines]


def read_tesseract(lines: list[Line], scratch: Path, cores: int) -> list[str]:
    paths = []
    for line in lines:
        paths.append(scratch / f"{line.key}.png")
        line.image.save(paths[-1])
    return [text.strip() for text in tesseract(paths, 7, cores)]


def score(lines: list[Line], texts: list[str]) -> dict:
    """CER / exact lines overall, per bucket, per family, clean and degraded; loops."""
    groups: dict[str, ErrorCounts] = defaultdict(ErrorCounts)
    for line, text in zip(lines, texts, strict=True):
        bucket = next(f"{lo}-{hi}" for lo, hi in BUCKETS if lo <= len(line.text) <= hi)
        case = line.case
        names = ("all", case, f"{case} {bucket}", f"{case} {line.family}")
        if case not in CASES:  # a kind of hard scan: its own rows, not in "all"
            names = ("hard scans", f"hard: {case}")
        elif case not in CASES[:2]:
            names = ("all", case)
        for group in names:
            groups[group].add([text], [line.text])
    loops = sum(len(t) > 1.5 * len(line.text) for line, t in zip(lines, texts, strict=True))
    return {
        "groups": {
            name: {"cer": round(c.cer, 4), "exact": round(c.exact_match, 3), "lines": c.lines}
            for name, c in sorted(groups.items())
        },
        "longer_than_1.5x": loops,
    }


def run(args: argparse.Namespace) -> dict:
    lines = make_lines(args.lines) + make_kind_lines(args.kinds)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        readers = {"tesseract": (read_tesseract, lines, Path(scratch), args.cores)}
        if shutil.which("tesseract") is None:
            sys.exit("tesseract is not installed: run infra/install-fonts.sh (it installs it)")
        for given in args.model:
            label, model = labelled(given)
            bare = (read_bare, model, lines, args.batch_size, args.cores, args.num_beams)
            readers[f"{label} bare"] = bare
            if not args.skip_pipeline:
                work = Path(tempfile.mkdtemp(dir=scratch))
                readers[f"{label} run"] = (read_pipeline, model, lines, work, args.num_beams)
        for name, (read, *read_args) in readers.items():
            texts, seconds = timed(read, *read_args)
            results[name] = score(lines, texts) | {
                "lines_per_s_per_core": round(len(lines) / seconds / args.cores, 2),
                "seconds": round(seconds, 1),
            }
    return {
        "lines": len(lines),
        "cores": args.cores,
        "num_beams": args.num_beams,
        "readers": results,
    }


def table(result: dict) -> str:
    """CER (exact lines) by group, lines/s per core and repeat loops, one column a reader."""
    readers = result["readers"]
    groups = list(next(iter(readers.values()))["groups"])
    rows = [
        (
            group,
            [
                f"{r['groups'][group]['cer']:.2%} ({r['groups'][group]['exact']:.0%})"
                for r in readers.values()
            ],
        )
        for group in groups
    ]
    rows.append(("lines/s per core", [str(r["lines_per_s_per_core"]) for r in readers.values()]))
    rows.append(
        ("outputs > 1.5x reference", [str(r["longer_than_1.5x"]) for r in readers.values()])
    )
    return markdown_table("lines", list(readers), rows)


def print_tables(result: dict) -> None:
    beams = "greedy" if result["num_beams"] == 1 else f"{result['num_beams']} beams"
    print(f"{result['lines']} line images, {result['cores']} core(s), {beams}; CER (exact lines)\n")
    print(table(result))


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lines", type=int, default=240, help="texts (each clean and degraded)")
    parser.add_argument("--num-beams", type=int, default=1, help="the model's beams (1: greedy)")
    parser.add_argument(
        "--kinds", type=int, default=0, help="texts for each kind of hard scan (0: none)"
    )


if __name__ == "__main__":
    main(__doc__, _arguments, run, print_tables)
