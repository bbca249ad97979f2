"""Page OCR against Tesseract: whole pages and PDFs, text in reading order.

Pages carry text no training line came from (Debian's licence and copyright files) in
font families held out of training (`pipeline.synthetic.fonts`), at 10-12 pt: one and two columns
with a title across them, rendered at 150 and 300 dpi, clean and scan-like
(`pipeline.synthetic.lines.degrade`); plus PDFs written by fpdf2 with the fonts embedded (read
through `--format pdf` at `input.pdf_dpi`). Every page is read by:

- shardscribe, bare: `segment_lines` and batched `generate` in this process;
- shardscribe, end to end: `shardscribe run --segment lines` over the page images and
  over the PDFs, as fresh processes (Ray start-up and model load included);
- Tesseract 5, `--psm 3` (automatic page segmentation), one process per page, one per
  core at a time, `OMP_THREAD_LIMIT=1`.

Page CER compares the text with whitespace runs (line breaks included) made one space,
so reading order counts and line-break style does not. Printed: CER per kind of page,
pages/s per core. `--json` prints one JSON object instead.

    python -m benchmarks.pages [--model shardscribe/printed-lines] [--pages 2]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as ds
import torch
from fpdf import FPDF
from PIL import Image, ImageFont

from benchmarks.harness import labelled, main, print_table, run_sampled, tesseract, timed
from model.images import max_aspect_ratio
from model.loading import load_model
from model.metrics import ErrorCounts
from model.settings import ModelSettings
from pipeline.inputs.pdf import PdfPages
from pipeline.inputs.segmentation import segment_lines
from pipeline.output.layout import LEDGER_DIR, RUNS_DIR
from pipeline.synthetic.drawing import PageLayout, draw_page
from pipeline.synthetic.fonts import font_split, installed_families
from pipeline.synthetic.lines import degrade
from pipeline.synthetic.texts import evaluation_paragraphs
from pipeline.training.objective import recognise

SEED = 20261202
A4_INCHES = (8.27, 11.69)


@dataclass(frozen=True)
class Page:
    key: str
    kind: str  # e.g. "2 columns 300 dpi degraded"
    text: str  # reference, lines in reading order
    image: Image.Image


def _regular_face(paths: tuple[str, ...]) -> str:
    """The family's upright, normal-weight face when its file name says so (Regular
    before Roman, Book and Light: Noto's extra package adds a Light that sorts first)."""
    for weight in ("Regular", "Roman", "Book", "Light"):
        plain = [p for p in paths if re.search(rf"-{weight}\.", p, re.IGNORECASE)]
        if plain:
            return sorted(plain)[0]
    return sorted(paths)[0]


def _prose(rng: random.Random, words: int) -> str:
    paragraphs = evaluation_paragraphs()
    text: list[str] = []
    while len(text) < words:
        text += rng.choice(paragraphs).split()
    return " ".join(text[:words])


def make_pages(per_kind: int) -> list[Page]:
    """`per_kind` pages of each kind: columns x dpi x clean/degraded, fonts rotating over
    the held-out families."""
    rng = random.Random(SEED)
    families = font_split(installed_families(), "heldout")
    if not families:
        sys.exit("no held-out font family is installed: run infra/install-fonts.sh")
    faces = [_regular_face(families[name]) for name in sorted(families)]
    pages = []
    for columns in (1, 2):
        for dpi in (150, 300):
            for i in range(per_kind):
                font = ImageFont.truetype(faces[len(pages) % len(faces)], _px(rng, dpi))
                width, height = (round(side * dpi) for side in A4_INCHES)
                layout = PageLayout(width, height, dpi, columns, dpi // 3)
                title = _prose(rng, rng.randint(3, 6)).title()
                image, lines = draw_page(_prose(rng, 900), font, layout, title)
                text = "\n".join(lines)
                kind = f"{columns} column{'s' * (columns > 1)} {dpi} dpi"
                key = f"{columns}col-{dpi}-{i}"
                pages.append(Page(f"{key}-clean", f"{kind} clean", text, image))
                pages.append(Page(f"{key}-degraded", f"{kind} degraded", text, degrade(image, rng)))
    return pages


def _px(rng: random.Random, dpi: int) -> int:
    return round(rng.uniform(10, 12) * dpi / 72)


def make_pdfs(scratch: Path, count: int) -> list[tuple[Path, list[str]]]:
    """PDFs of one page each, fonts embedded; each with its reference lines."""
    rng = random.Random(SEED + 1)
    families = font_split(installed_families(), "heldout")
    faces = [
        p for p in (_regular_face(families[n]) for n in sorted(families)) if p.endswith(".ttf")
    ]
    made = []
    for i in range(count):
        pdf = FPDF(format="A4")
        pdf.set_margins(25, 25)
        pdf.add_font("body", "", faces[i % len(faces)])
        pdf.set_font("body", size=rng.choice((10, 11, 12)))
        pdf.add_page()
        words = _prose(rng, 400)
        pitch = pdf.font_size * 1.4
        # Ragged right (justified lines of long file paths open gaps that read as
        # columns), and only the lines that fit the one page.
        lines = pdf.multi_cell(0, pitch, words, align="L", dry_run=True, output="LINES")
        lines = lines[: int((pdf.h - pdf.t_margin - pdf.b_margin) // pitch)]
        for line in lines:
            pdf.cell(0, pitch, line, new_x="LMARGIN", new_y="NEXT")
        path = scratch / f"doc-{i}.pdf"
        pdf.output(str(path))
        made.append((path, [line.strip() for line in lines]))
    return made


def normalised(text: str) -> str:
    return " ".join(text.split())


def read_bare(model: str, images: list[Image.Image], batch_size: int, cores: int) -> list[str]:
    torch.set_num_threads(cores)
    loaded = load_model(ModelSettings(name=model))
    budget = loaded.model.generation_config.max_new_tokens or 128
    limit = max_aspect_ratio(loaded.image_processor)
    texts = []
    with torch.inference_mode():
        for image in images:
            lines = segment_lines(image, limit)
            read: list[str] = []
            for start in range(0, len(lines), batch_size):
                crops = [line.crop.convert("RGB") for line in lines[start : start + batch_size]]
                pixels = loaded.image_processor(images=crops, return_tensors="pt").pixel_values
                read += recognise(
                    loaded.model, loaded.tokenizer, pixels, budget, ctc_head=loaded.ctc_head
                )
            texts.append("\n".join(read))
    return texts


def read_pipeline(
    model: str, folder: Path, scratch: Path, extra: list[str]
) -> tuple[dict[str, str], dict]:
    """`shardscribe run --segment lines` over `folder`, in a fresh process; ({key: text},
    where its time went: CPU seconds by process, the model thread's seconds by step and
    the run's start-up, from its ledger)."""
    output = scratch / f"out-{folder.name}"
    command = [sys.executable, "-m", "jobs", "run", "--input", str(folder), "--output"]
    command += [str(output), "--model", model, "--segment", "lines", *extra]
    code, stderr, cpu = run_sampled(command)
    if code != 0:
        sys.exit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    rows = ds.dataset(output, format="parquet").to_table().to_pylist()
    [record] = [json.loads(p.read_text()) for p in (output / LEDGER_DIR / RUNS_DIR).iterdir()]
    generation = record["generation"]
    steps = {name: generation[f"{name}_s"] for name in ("preprocess", "encoder", "decoder")}
    costs = {
        "cpu_s": {role: round(seconds, 1) for role, seconds in sorted(cpu.items())},
        "model_thread_s": steps,
        "startup_s": record["startup_s"],
        "run_s": round(record["ended"] - record["started"], 1),
        "rows": record["rows"],
    }
    return {f"{row['shard']}/{row['key']}": row["text"] or "" for row in rows}, costs


def score(kinds: list[str], references: list[str], texts: list[str]) -> dict[str, float]:
    groups: dict[str, ErrorCounts] = defaultdict(ErrorCounts)
    for kind, reference, text in zip(kinds, references, texts, strict=True):
        for group in ("all", kind):
            groups[group].add([normalised(text)], [normalised(reference)])
    return {name: round(counts.cer, 4) for name, counts in sorted(groups.items())}


def run(args: argparse.Namespace) -> dict:
    pages = make_pages(args.pages)
    result: dict = {"pages": len(pages), "pdfs": args.pdfs, "cores": args.cores, "readers": {}}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        images_dir, pdf_dir = scratch / "pages", scratch / "pdfs"
        images_dir.mkdir()
        pdf_dir.mkdir()
        paths = []
        for page in pages:
            paths.append(images_dir / f"{page.key}.png")
            page.image.save(paths[-1])
        pdfs = make_pdfs(pdf_dir, args.pdfs)
        kinds = [page.kind for page in pages]
        references = [page.text for page in pages]
        pdf_refs = ["\n".join(lines) for _, lines in pdfs]
        pdf_images = [_rendered(path, args.pdf_dpi) for path, _ in pdfs]

        texts, seconds = timed(tesseract, paths, 3, args.cores)
        pdf_texts, pdf_seconds = timed(tesseract, [_png(p, i) for p, i in pdf_images], 3, 1)
        result["readers"]["tesseract --psm 3"] = _figures(
            kinds, references, texts, seconds, pdf_refs, pdf_texts, pdf_seconds, args.cores
        )
        for given in args.model:
            label, model = labelled(given)
            all_images = [page.image for page in pages] + [image for _, image in pdf_images]
            texts, seconds = timed(read_bare, model, all_images, args.batch_size, args.cores)
            result["readers"][f"{label} bare"] = _figures(
                kinds,
                references,
                texts[: len(pages)],
                seconds * len(pages) / len(all_images),
                pdf_refs,
                texts[len(pages) :],
                seconds * len(pdfs) / len(all_images),
                args.cores,
            )
            if args.skip_pipeline:
                continue
            (by_key, costs), seconds = timed(read_pipeline, model, images_dir, scratch, [])
            read = [by_key[f"part-00000/{page.key}.png"] for page in pages]
            pdf_dpi = ["--pdf-dpi", str(args.pdf_dpi), "--pdf-text-layer", "ignore"]
            (pdf_by_key, _), pdf_seconds = timed(read_pipeline, model, pdf_dir, scratch, pdf_dpi)
            pdf_read = [pdf_by_key[f"{path.stem}/page-0001"] for path, _ in pdfs]
            result["readers"][f"{label} run"] = (
                _figures(
                    kinds, references, read, seconds, pdf_refs, pdf_read, pdf_seconds, args.cores
                )
                | _paid_startup(len(pages), costs, args.cores)
                | {"costs": costs}
            )
    return result


def _paid_startup(pages: int, costs: dict, cores: int) -> dict:
    """Pages/s once start-up is paid: from when Ray was up, the model loaded and the first
    input read, over the run's own clock."""
    startup = costs["startup_s"]
    paid = max(startup.get(step, 0.0) for step in ("model_loaded", "first_read"))
    return {"pages_per_s_after_startup_per_core": round(pages / (costs["run_s"] - paid) / cores, 3)}


def _rendered(path: Path, dpi: int) -> tuple[Path, Image.Image]:
    """The PDF's first page as `shardscribe run` renders it."""
    pages = PdfPages(path.open("rb"), dpi, None, prefer_text_layer=False)
    try:
        return path, pages[0]
    finally:
        pages.close()


def _png(path: Path, image: Image.Image) -> Path:
    """The rendered page as a PNG beside the PDF's folder (not in it: that is an input)."""
    target = path.parent.parent / f"{path.stem}.png"
    image.save(target)
    return target


def _figures(kinds, references, texts, seconds, pdf_refs, pdf_texts, pdf_seconds, cores):
    cer = score(kinds, references, texts)
    if pdf_refs:
        cer |= {"pdf": score(["pdf"] * len(pdf_refs), pdf_refs, pdf_texts)["all"]}
    return {
        "cer": cer,
        "pages_per_s_per_core": round(len(texts) / seconds / cores, 3),
        "seconds": round(seconds, 1),
        "pdf_seconds": round(pdf_seconds, 1),
    }


def print_tables(result: dict) -> None:
    readers = result["readers"]
    groups = list(next(iter(readers.values()))["cer"])
    print(f"{result['pages']} pages + {result['pdfs']} PDFs, {result['cores']} core(s); CER\n")
    rows = [(group, [f"{r['cer'][group]:.2%}" for r in readers.values()]) for group in groups]
    rows.append(("pages/s per core", [str(r["pages_per_s_per_core"]) for r in readers.values()]))
    rows.append(
        (
            "pages/s per core, start-up paid",
            [str(r.get("pages_per_s_after_startup_per_core", "")) for r in readers.values()],
        )
    )
    print_table("pages", list(readers), rows)
    for name, reader in readers.items():
        if "costs" in reader:
            costs = reader["costs"]
            print(f"\n{name}, page images: {costs['run_s']} s; start-up {costs['startup_s']}")
            print(f"  CPU s by process: {costs['cpu_s']}")
            print(f"  model thread s by step: {costs['model_thread_s']}")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pages", type=int, default=2, help="pages of each kind (x8 kinds)")
    parser.add_argument("--pdfs", type=int, default=4, help="one-page PDFs made with fpdf2")
    parser.add_argument("--pdf-dpi", type=int, default=200, help="what run renders PDFs at")


if __name__ == "__main__":
    main(__doc__, _arguments, run, print_tables)
