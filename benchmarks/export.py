"""Export speed: pages/s of `shardscribe export` to PDF, hOCR and ALTO.

Export is reading and writing, not OCR, so the page output is made without a model:
scanned-like A4 pages (200 dpi, about 40 printed lines of words each) go into PDFs of
`--pages-per-pdf` pages as page images, and into a folder of PNGs; their committed
output (one row per page, each line's box and text, as `run --segment lines` writes it)
is written by the project's own commit code and ledger. Each format is then exported
from a fresh destination, in this process, and timed end to end (listing, reading the
output and the input, writing every file). Printed: a table of pages/s, or `--json`.

    python -m benchmarks.export [--pages 100] [--pages-per-pdf 10]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import fsspec
import pyarrow as pa
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from pipeline.config_loading import validate_config
from pipeline.export.export_run import ExportSettings, export_output
from pipeline.inputs.passthrough import encode_rows
from pipeline.inputs.pdf import page_key
from pipeline.output.commit import commit_shard, output_columns
from pipeline.output.ledger import Ledger, run_settings
from pipeline.synthetic.texts import word_list

DPI = 200
A4_PT = (595.28, 841.89)
MARGIN, FONT_PX, PITCH = 160, 30, 48


def printed_page(rng: random.Random, words: list[str]) -> tuple[Image.Image, list[dict]]:
    """An A4 page at DPI with lines of words, and each line's ink box and text."""
    width, height = round(A4_PT[0] * DPI / 72), round(A4_PT[1] * DPI / 72)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=FONT_PX)
    lines = []
    for top in range(MARGIN, height - MARGIN - PITCH, PITCH):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(6, 10)))
        draw.text((MARGIN, top), text, fill=0, font=font)
        x0, y0, x1, y1 = draw.textbbox((MARGIN, top), text, font=font)
        lines.append({"x0": x0, "y0": y0, "x1": x1, "y1": y1, "text": text})
    return page, lines


def write_inputs(root: Path, pages: int, per_pdf: int) -> dict[str, list[list[dict]]]:
    """The PDFs under root/pdfs and the PNGs under root/images; the lines of every page,
    by input kind."""
    rng, words = random.Random(0), word_list("all")
    (root / "pdfs").mkdir(parents=True)
    (root / "images").mkdir()
    made: dict[str, list[list[dict]]] = {"pdfs": [], "images": []}
    for start in range(0, pages, per_pdf):
        pdf = FPDF(unit="pt", format=A4_PT)
        for number in range(start, min(start + per_pdf, pages)):
            image, lines = printed_page(rng, words)
            image.save(root / "images" / f"page-{number:04d}.png", dpi=(DPI, DPI))
            pdf.add_page()
            pdf.image(image, x=0, y=0, w=A4_PT[0], h=A4_PT[1])
            made["pdfs"].append(lines)
            made["images"].append(lines)
        pdf.output(str(root / "pdfs" / f"doc-{start // per_pdf:03d}.pdf"))
    return made


def commit_output(input_dir: Path, output_dir: Path, pages: list[list[dict]], per: int) -> None:
    """The output `run --segment lines` would commit for these pages, had it read every
    line right: PDFs one shard each, images in shards of `per`."""
    pdf = input_dir.name == "pdfs"
    reading = {"pdf_dpi": DPI} if pdf else {"images_per_shard": per}
    config = validate_config(
        {
            "input": {"uri": str(input_dir), "segment": "lines", **reading},
            "output": {"uri": str(output_dir)},
        }
    )
    fs = fsspec.filesystem("file")
    shards = [pages[start : start + per] for start in range(0, len(pages), per)]
    ledger = Ledger(fs, str(output_dir))
    settings = run_settings(config, "benchmark")
    fingerprint = ledger.start_run(settings, str(input_dir), len(shards), overwrite=False)
    for number, chunk in enumerate(shards):
        shard = f"doc-{number:03d}" if pdf else f"part-{number:05d}"
        numbers = pa.table({"page": pa.array(range(1, len(chunk) + 1), pa.int32())})
        passthrough = encode_rows(numbers if pdf else None, len(chunk))
        rows = [
            {
                "index": i,
                "shard": shard,
                "key": page_key(i) if pdf else f"page-{number * per + i:04d}.png",
                "text": "\n".join(line["text"] for line in lines),
                "error": None,
                "lines": lines,
                "passthrough": passthrough[i],
            }
            for i, lines in enumerate(chunk)
        ]
        commit_shard(fs, str(output_dir), shard, rows, fingerprint, output_columns(config))


def run(args: argparse.Namespace) -> dict:
    result = {"pages": args.pages, "pages_per_pdf": args.pages_per_pdf, "pages_per_s": {}}
    with tempfile.TemporaryDirectory(prefix="export-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        made = write_inputs(scratch / "in", args.pages, args.pages_per_pdf)
        for kind, pages in made.items():
            output = scratch / f"out-{kind}"
            commit_output(scratch / "in" / kind, output, pages, args.pages_per_pdf)
            for to in ("pdf", "hocr", "alto"):
                settings = ExportSettings(
                    output=str(output), to=to, out=str(scratch / f"{kind}-{to}")
                )
                started = time.perf_counter()
                summary = export_output(settings)
                seconds = time.perf_counter() - started
                assert summary.exit_code == 0 and summary.pages == args.pages, summary.line()
                result["pages_per_s"][f"{kind} -> {to}"] = round(args.pages / seconds, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100, help="pages of each input kind")
    parser.add_argument("--pages-per-pdf", type=int, default=10, help="and per image shard")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.pages} A4 pages at {DPI} dpi, about 40 lines each; pages/s\n")
    print("| input -> format | pages/s |\n|---|---|")
    for name, rate in result["pages_per_s"].items():
        print(f"| {name} | {rate} |")


if __name__ == "__main__":
    main()
