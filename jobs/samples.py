"""Sample data: printed text lines rendered with Pillow's own font, as WebDataset tars."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

from jobs.render import draw_line
from pipeline.inputs.webdataset import write_tar

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


def write_sample_shards(directory: Path, shards: int = 3, per_shard: int = 8, seed: int = 0):
    """WebDataset tars `lines-NNNN.tar`, each sample a .png line and its .txt/.json."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = sample_lines(shards * per_shard, seed)
    for shard in range(shards):
        members = []
        for i in range(per_shard):
            text = lines[shard * per_shard + i]
            key = f"{shard:04d}-{i:04d}"
            png = io.BytesIO()
            draw_line(text).save(png, "PNG")
            members += [
                (f"{key}.png", png.getvalue()),
                (f"{key}.txt", text.encode()),
                (f"{key}.json", json.dumps({"source": "demo", "n": i}).encode()),
            ]
        with open(directory / f"lines-{shard:04d}.tar", "wb") as file:
            write_tar(file, members)
    return directory
