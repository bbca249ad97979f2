"""Where a line model's time goes outside the pipeline, and what checked drafts save.

The lines are the OCR benchmark's (`benchmarks.ocr_vs_tesseract`: held-out texts and
font families, clean, degraded, tall, digits, doubled letters), read in batches of
`--batch-size` in their own order, in this process, at `--threads` torch threads:

- `generate`: the model's `generate` over the batch, as `run` read it before text
  frames (every line padded to the input width) or, for a text-frame model, on each
  span length's frames, token by token;
- `drafted` (text-frame models with a CTC head): the frames, the CTC head's draft, and
  decoder passes that check it (`model.drafting`), as `run` reads them.

Printed per model and reader: lines/s per core, seconds in the encoder, the draft and
the decoder, decoder passes per batch, lines read in one pass, CER against the
printed text, and for `drafted` the lines whose text differs from greedy `generate` on
that line alone (0 is the contract) and from the same line in other batches.

    python -m benchmarks.reader --model v3=PATH --model shardscribe/printed-lines
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from transformers.modeling_outputs import BaseModelOutput

from benchmarks.harness import labelled, main, print_table
from benchmarks.ocr_vs_tesseract import make_lines
from model.drafting import checked_drafts, ctc_drafts
from model.images import pixel_arrays
from model.line_frames import encode_lines, span_groups, uses_text_frames
from model.loading import load_model
from model.metrics import ErrorCounts
from model.settings import ModelSettings


class _Clock:
    """Seconds per step, summed over batches."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    def __call__(self, step: str, work, *args, **kwargs):
        started = time.perf_counter()
        result = work(*args, **kwargs)
        self.seconds[step] += time.perf_counter() - started
        return result


def _generate(loaded, pixels: torch.Tensor, budget: int, clock: _Clock) -> torch.Tensor:
    model = loaded.model
    if not uses_text_frames(model):  # the encoder runs inside generate
        return clock(
            "generate with encoder", model.generate, pixel_values=pixels, max_new_tokens=budget
        )
    encoded = clock("encoder", encode_lines, model, pixels)
    rows_ids: dict[int, list[int]] = {}
    for rows, states in span_groups(encoded):
        outputs = BaseModelOutput(last_hidden_state=states)
        ids = clock("generate", model.generate, encoder_outputs=outputs, max_new_tokens=budget)
        rows_ids |= dict(zip(rows, ids.tolist(), strict=True))
    width = max(map(len, rows_ids.values()))
    pad = model.generation_config.pad_token_id
    padded = [rows_ids[row] + [pad] * (width - len(rows_ids[row])) for row in sorted(rows_ids)]
    return torch.tensor(padded)


def _drafted(loaded, pixels: torch.Tensor, budget: int, clock: _Clock, counts: dict):
    model = loaded.model
    encoded = clock("encoder", encode_lines, model, pixels)
    blank = model.generation_config.pad_token_id
    drafts = clock("draft", ctc_drafts, loaded.ctc_head, encoded, blank)
    reading = clock("decoder", checked_drafts, model, encoded, drafts, budget)
    counts["passes"] += reading.passes
    counts["one pass"] += reading.drafted_rows
    return reading.sequences


def read(model: str, lines, batch_size: int, threads: int, dtype: str) -> dict[str, dict]:
    torch.set_num_threads(threads)
    loaded = load_model(ModelSettings(name=model, dtype=dtype))
    budget = loaded.model.generation_config.max_new_tokens or 128
    images = [line.image.convert("RGB") for line in lines]
    pixels = torch.from_numpy(pixel_arrays(images, loaded.image_processor)).to(loaded.dtype)
    readers = {"generate": _generate}
    if uses_text_frames(loaded.model) and loaded.ctc_head is not None:
        readers["drafted"] = _drafted
    results = {}
    with torch.inference_mode():
        for name, reader in readers.items():
            clock, counts, texts = _Clock(), defaultdict(int), []
            started = time.perf_counter()
            for begin in range(0, len(lines), batch_size):
                batch = pixels[begin : begin + batch_size]
                extra = (counts,) if name == "drafted" else ()
                ids = reader(loaded, batch, budget, clock, *extra)
                texts += loaded.tokenizer.batch_decode(ids, skip_special_tokens=True)
            seconds = time.perf_counter() - started
            errors = ErrorCounts()
            errors.add(texts, [line.text for line in lines])
            batches = -(-len(lines) // batch_size)
            results[name] = {
                "lines_per_s_per_core": round(len(lines) / seconds / threads, 1),
                "seconds": round(seconds, 2),
                "by_step_s": {step: round(s, 2) for step, s in clock.seconds.items()},
                "cer": round(errors.cer, 4),
                "passes_per_batch": round(counts["passes"] / batches, 1) if counts else None,
                "one_pass_lines": counts["one pass"] if counts else None,
                "texts": texts,
            }
    if "drafted" in results:
        results["drafted"] |= _agreement(loaded, pixels, budget, results)
    for result in results.values():
        del result["texts"]
    return results


def _agreement(loaded, pixels: torch.Tensor, budget: int, results: dict) -> dict:
    """Lines whose drafted text differs from greedy `generate` on the line alone, and from
    the same line read in a batch of the lines in reverse order."""
    clock, alone = _Clock(), []
    for row in range(len(pixels)):
        ids = _generate(loaded, pixels[row : row + 1], budget, clock)
        alone += loaded.tokenizer.batch_decode(ids, skip_special_tokens=True)
    reversed_texts = []
    flipped = pixels.flip(0)
    for begin in range(0, len(flipped), 64):
        ids = _drafted(loaded, flipped[begin : begin + 64], budget, clock, defaultdict(int))
        reversed_texts += loaded.tokenizer.batch_decode(ids, skip_special_tokens=True)
    drafted = results["drafted"]["texts"]
    return {
        "differ_from_alone": sum(a != b for a, b in zip(drafted, alone, strict=True)),
        "differ_in_other_batch": sum(
            a != b for a, b in zip(drafted, reversed_texts[::-1], strict=True)
        ),
    }


def run(args: argparse.Namespace) -> dict:
    lines = make_lines(args.lines)
    models = {}
    for given in args.model:
        label, model = labelled(given)
        models[label] = read(model, lines, args.batch_size, args.threads, args.dtype)
    return {"lines": len(lines), "threads": args.threads, "dtype": args.dtype, "models": models}


def print_tables(result: dict) -> None:
    print(
        f"{result['lines']} line images, {result['threads']} torch thread(s), {result['dtype']}\n"
    )
    columns = [(m, r) for m, readers in result["models"].items() for r in readers]
    figures = [result["models"][m][r] for m, r in columns]
    steps = sorted({step for f in figures for step in f["by_step_s"]})
    rows = [
        ("lines/s per core", [str(f["lines_per_s_per_core"]) for f in figures]),
        ("CER", [f"{f['cer']:.2%}" for f in figures]),
        *[(f"{s} s", [str(f["by_step_s"].get(s, "")) for f in figures]) for s in steps],
        ("decoder passes / batch", [str(f["passes_per_batch"] or "") for f in figures]),
        ("lines read in one pass", [str(f["one_pass_lines"] or "") for f in figures]),
        ("differ from generate alone", [str(f.get("differ_from_alone", "")) for f in figures]),
        ("differ in another batch", [str(f.get("differ_in_other_batch", "")) for f in figures]),
    ]
    print_table("reader", [f"{m} {r}" for m, r in columns], rows)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lines", type=int, default=240, help="texts (each clean and degraded)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--dtype", default="float32", help="the model's dtype (model.dtype)")


if __name__ == "__main__":
    main(__doc__, _arguments, run, print_tables)
