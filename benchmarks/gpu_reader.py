"""The generation engine and checked drafts on one GPU, outside Ray: what `benchmarks/gpu.sh`
runs on a lent machine that has torch and transformers but no Ray and no registry.

Lines of 5-80 characters are drawn with Pillow's own font (`pipeline.synthetic.drawing`) and read by
each model in batches of `--batch-size`:

- `static`: `TextGenerator.predict` a batch at a time (`generate`, or for a text-frame
  model its frames, by checked drafts);
- `continuous`: the continuous engine fed the same batches (models it can run);
- `alone`: for a text-frame model, `generate` on each line's own frames, one line at a
  time: the texts checked drafts must equal.

Printed per model: lines/s of each reader, seconds, and lines whose text differs
between readers. `--json` prints one JSON object.

    python -m benchmarks.gpu_reader --model base --model shardscribe/printed-lines
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from transformers.modeling_outputs import BaseModelOutput

from model import GenerationSettings, ModelSettings, TextGenerator, load_model
from model.continuous import ContinuousEngine, continuous_blocker
from model.images import pixel_arrays
from model.line_frames import encode_lines
from model.shared_batches import SharedBatches
from model.tiny import SIZES, build_random_model
from pipeline.synthetic.drawing import draw_line
from pipeline.synthetic.texts import word_list


def lines(count: int, seed: int) -> list:
    rng = random.Random(seed)
    words = word_list("train")
    texts = []
    for _ in range(count):
        text = ""
        target = rng.randint(5, 80)
        while len(text) < target:
            text += rng.choice(words) + " "
        texts.append(text[:target].strip())
    return [draw_line(text).convert("RGB") for text in texts]


def _timed(read, *args):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = read(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


def _static(generator: TextGenerator, pixels, batch: int) -> list[str]:
    texts = []
    for begin in range(0, len(pixels), batch):
        texts += generator.generate(pixels[begin : begin + batch])
    return texts


def _continuous(generator: TextGenerator, pixels, batch: int) -> list[str]:
    shared = SharedBatches(ContinuousEngine(generator, lambda: batch))
    texts = []
    for begin in range(0, len(pixels), batch):
        chunk = pixels[begin : begin + batch]
        texts += [p.text for p in shared.run(chunk, list(range(len(chunk))))]
    return texts


def _alone(generator: TextGenerator, pixels) -> list[str]:
    loaded, texts = generator.loaded, []
    with torch.inference_mode():
        for row in range(len(pixels)):
            encoded = encode_lines(loaded.model, loaded.model_input(pixels[row : row + 1]))
            ids = loaded.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded.states),
                max_new_tokens=generator.max_new_tokens,
            )
            texts += generator.decode(ids)
    return texts


def measure(model: str, images: list, batch: int, max_new_tokens: int) -> dict:
    loaded = load_model(ModelSettings(name=model))
    generator = TextGenerator(loaded, GenerationSettings(max_new_tokens=max_new_tokens))
    pixels = pixel_arrays(images, loaded.image_processor)
    _static(generator, pixels[:batch], batch)  # warm-up: kernels, allocator
    readers = {"static": _static}
    if continuous_blocker(generator) is None:
        readers["continuous"] = _continuous
    texts, figures = {}, {"device": str(loaded.device), "dtype": str(loaded.dtype)}
    for name, read in readers.items():
        texts[name], seconds = _timed(read, generator, pixels, batch)
        figures[f"{name}_lines_per_s"] = round(len(images) / seconds, 1)
    if generator.drafts:
        figures["drafted"] = True
        texts["alone"], _ = _timed(_alone, generator, pixels)
    names = list(texts)
    for other in names[1:]:
        differ = sum(a != b for a, b in zip(texts["static"], texts[other], strict=True))
        figures[f"static_differs_from_{other}"] = differ
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a checkpoint, or small / base")
    parser.add_argument("--lines", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    images = lines(args.lines, seed=5)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.model or ["base", "shardscribe/printed-lines"]:
            path = str(build_random_model(Path(scratch) / name, name)) if name in SIZES else name
            results[name] = measure(path, images, args.batch_size, args.max_new_tokens)
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    result = {"card": name, "lines": args.lines, "batch_size": args.batch_size, "models": results}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['card']}: {args.lines} lines, batches of {args.batch_size}")
    for model, figures in results.items():
        print(f"  {model}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
