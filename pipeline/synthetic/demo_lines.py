"""The demo's lines: short lines of words and numbers printed in Pillow's own font, as
WebDataset tars (`shardscribe demo`) and as PNG bytes (the bench, tests)."""

from __future__ import annotations

import random
from pathlib import Path

from pipeline.synthetic.drawing import line_png
from pipeline.synthetic.line_shards import LineSample, write_line_shards

WORDS = (
    "shard",
    "batch",
    "ray",
    "parquet",
    "vision",
    "encoder",
    "decoder",
    "text",
    "image",
    "line",
    "model",
    "token",
    "beam",
    "greedy",
    "storage",
    "bucket",
    "object",
    "commit",
    "ledger",
    "retry",
    "resume",
    "progress",
    "actor",
    "pool",
    "cluster",
)


def sample_lines(count: int, seed: int) -> list[str]:
    """Short lines of words and numbers, deterministic from the seed."""
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        words = rng.sample(WORDS, rng.randint(1, 3))
        if rng.random() < 0.5:
            words.append(str(rng.randint(0, 9999)))
        lines.append(" ".join(words))
    return lines


def line_images(count: int, seed: int) -> list[bytes]:
    """PNG text lines, different from each other, deterministic from the seed."""
    return [line_png(text) for text in sample_lines(count, seed)]


def write_sample_shards(
    directory: Path, shards: int = 3, per_shard: int = 8, seed: int = 0
) -> Path:
    """WebDataset tars `lines-NNNN.tar`, each sample a .png line and its .txt/.json."""
    samples = []
    for i, text in enumerate(sample_lines(shards * per_shard, seed)):
        shard, n = divmod(i, per_shard)
        meta = {"source": "demo", "n": n}
        samples.append(LineSample(f"{shard:04d}-{n:04d}", line_png(text), text, meta))
    write_line_shards(str(directory), samples, [per_shard], name="lines-{:04d}.tar")
    return directory
