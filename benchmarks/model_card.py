"""A bundled model's evaluation, written from the OCR benchmark's JSON: `evaluation.json`
beside the weights (the benchmark's figures, with the command and date that gave them)
and the table of its card, between the card's `evaluation` markers. A model is committed
with figures this script wrote, never with figures typed by hand.

    python -m benchmarks.ocr_vs_tesseract --model new=PATH --model old=shardscribe/printed-lines \\
        --skip-pipeline --json > result.json
    python -m benchmarks.model_card result.json --model printed-lines \\
        --command "python -m benchmarks.ocr_vs_tesseract ..." --machine "2 cores, quiet"
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
from pathlib import Path

from benchmarks.ocr_vs_tesseract import table
from model.bundled import WEIGHTS

START, END = "<!-- evaluation:start -->", "<!-- evaluation:end -->"


def write_card(result: dict, directory: Path, command: str, machine: str) -> None:
    """evaluation.json and the card's table from one benchmark result."""
    figures = {
        "benchmark": command,
        "machine": machine,
        "date": datetime.date.today().isoformat(),
        **result,
    }
    (directory / "evaluation.json").write_text(json.dumps(figures, indent=1) + "\n")
    card = directory / "README.md"
    text = card.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{card} has no {START} ... {END} markers to write between")
    body = (
        f"`{command}`, {machine}, {figures['date']}: {result['lines']} line images, "
        f"{result['cores']} core(s); CER (exact lines).\n\n{table(result)}"
    )
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    card.write_text(pattern.sub(lambda _: f"{START}\n{body}\n{END}", text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="the benchmark's --json output")
    parser.add_argument("--model", default="printed-lines", help="the bundled model's folder")
    parser.add_argument("--command", required=True, help="the command that gave the result")
    parser.add_argument("--machine", required=True, help="the machine it ran on")
    args = parser.parse_args()
    result = json.loads(args.result.read_text())
    write_card(result, WEIGHTS / args.model, args.command, args.machine)


if __name__ == "__main__":
    main()
