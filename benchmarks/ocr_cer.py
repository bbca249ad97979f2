"""CER / WER of an OCR model on held-out printed lines it never saw in training.

Two sets, both from seeds and strings outside training (training lines use the
`train` part of the word list; these use the held-out words, random characters and
numbers, from their own seeds):

- clean: black text on white, Pillow's bundled font at sizes 14-32, plain margins,
  rendered here, not by `jobs.synth` (the way someone checking the model would);
- augmented: `jobs.synth` lines (grey levels, blur, noise, the given fonts).

    python -m benchmarks.ocr_cer --model shardscribe/printed-lines [--lines 500] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time

import torch
from PIL import Image, ImageDraw, ImageFont

from jobs.synth import SynthSettings, random_line, synth_samples, word_list
from model.bundled import resolve_model_name
from model.loading import load_model
from model.metrics import ErrorCounts
from model.settings import ModelSettings
from model.training import recognise

CLEAN_SEED = 20261124
AUGMENTED_SEED = 777


def clean_lines(count: int, max_chars: int) -> list[tuple[str, Image.Image]]:
    rng = random.Random(CLEAN_SEED)
    words = word_list("heldout")
    samples = []
    for _ in range(count):
        text = random_line(rng, words, max_chars)
        font = ImageFont.load_default(size=rng.randint(14, 32))
        left, top, right, bottom = font.getbbox(text)
        margin = rng.randint(4, 16)
        image = Image.new("RGB", (right - left + 2 * margin, bottom - top + margin), "white")
        ImageDraw.Draw(image).text((margin - left, margin // 2 - top), text, "black", font)
        samples.append((text, image))
    return samples


def augmented_lines(count: int, max_chars: int, fonts: tuple[str, ...]):
    settings = SynthSettings(
        lines=count,
        per_shard=count,
        seed=AUGMENTED_SEED,
        fonts=fonts,
        max_chars=max_chars,
        words="heldout",
    )
    return [
        (text, Image.open(io.BytesIO(png)).convert("RGB"))
        for _, text, png in synth_samples(settings, 0)
    ]


def measure(loaded, samples, num_beams: int, batch_size: int = 32) -> dict:
    counts = ErrorCounts()
    started = time.perf_counter()
    for start in range(0, len(samples), batch_size):
        texts, images = zip(*samples[start : start + batch_size], strict=True)
        pixels = loaded.image_processor(images=list(images), return_tensors="pt").pixel_values
        counts.add(recognise(loaded.model, loaded.tokenizer, pixels, 48, num_beams), texts)
    return {
        "cer": round(counts.cer, 4),
        "wer": round(counts.wer, 4),
        "exact_match": round(counts.exact_match, 4),
        "lines": counts.lines,
        "lines_per_s": round(counts.lines / (time.perf_counter() - started), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shardscribe/printed-lines")
    parser.add_argument("--lines", type=int, default=500, help="lines per set")
    parser.add_argument("--max-chars", type=int, default=32)
    parser.add_argument("--font", action="append", default=[], help="extra fonts (augmented)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    loaded = load_model(ModelSettings(name=resolve_model_name(args.model)))
    sets = {
        "clean": clean_lines(args.lines, args.max_chars),
        "augmented": augmented_lines(args.lines, args.max_chars, tuple(args.font)),
    }
    result = {
        f"{name}_{'greedy' if beams == 1 else f'beam{beams}'}": measure(loaded, samples, beams)
        for name, samples in sets.items()
        for beams in (1, 4)
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'set':<20}{'CER':>8}{'WER':>8}{'exact':>8}{'lines/s':>9}")
    for name, figures in result.items():
        print(
            f"{name:<20}{figures['cer']:>8.2%}{figures['wer']:>8.2%}"
            f"{figures['exact_match']:>8.2%}{figures['lines_per_s']:>9}"
        )


if __name__ == "__main__":
    main()
