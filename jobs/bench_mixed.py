"""`shardscribe bench --workload mixed`: static batches against continuous batching in
one run, on the same shards.

The lines are 1 to 80 characters of held-out prose, rendered and read by the bundled
model, which ends each text with its own end-of-sequence token, so the texts of a batch
end at really different steps. Shards of 5 images sit beside shards of 40: with static
batches an actor's batch is one block, so small shards give small batches; continuous
batching feeds the rows of several blocks into one running set.

Besides images/s, the figures that do not depend on the machine: occupancy (live rows
over computed rows, over all decoder steps), rows per decode step and per encoder call,
and the pixel bytes that crossed to the actors per image. The pipeline runs in the order
static, continuous, continuous, static, so warm worker processes favour neither.
"""

from __future__ import annotations

import io
import random
import uuid
from typing import Any

import ray

from jobs.bench import BenchSettings, model_path, time_pipeline
from jobs.render import draw_line
from jobs.texts import evaluation_paragraphs, prose_line
from model.engine_stats import EngineStats
from pipeline.config import validate_config
from pipeline.inputs.webdataset import tar_bytes
from pipeline.storage import join, open_filesystem

SHARD_SIZES = (5, 5, 5, 5, 40)  # small shards beside large ones, in turn
MAX_CHARS = 80
MODES = ("static", "continuous")


def mixed_lines(count: int, seed: int) -> list[str]:
    """Prose lines of 1 to `MAX_CHARS` characters, lengths uniform."""
    rng = random.Random(seed)
    paragraphs = evaluation_paragraphs()
    return [prose_line(paragraphs, rng, rng.randint(1, MAX_CHARS)) for _ in range(count)]


def write_mixed_shards(images: list[bytes], uri: str, storage) -> list[int]:
    """WebDataset tars of `SHARD_SIZES` images in turn (the last one may be short);
    returns the sizes written."""
    fs, root = open_filesystem(uri, storage)
    fs.makedirs(root, exist_ok=True)
    sizes, start = [], 0
    while start < len(images):
        chunk = images[start : start + SHARD_SIZES[len(sizes) % len(SHARD_SIZES)]]
        members = [(f"{i:07d}.png", data) for i, data in enumerate(chunk, start)]
        fs.pipe_file(join(root, f"part-{len(sizes):05d}.tar"), tar_bytes(members))
        sizes.append(len(chunk))
        start += len(chunk)
    return sizes


def _png(text: str) -> bytes:
    buffer = io.BytesIO()
    draw_line(text).save(buffer, "PNG")
    return buffer.getvalue()


def run_mixed_bench(settings: BenchSettings) -> dict[str, Any]:
    settings.workdir.mkdir(parents=True, exist_ok=True)
    model = model_path(settings)
    images = [_png(text) for text in mixed_lines(settings.images, settings.seed)]
    base = str(settings.workdir / f"mixed-{uuid.uuid4().hex[:8]}")
    shards_uri = join(base, "shards")

    def config(batching: str, run: int):
        return validate_config(
            {
                "input": {"uri": shards_uri},
                "output": {"uri": join(base, f"output-{batching}-{run}")},
                "model": {"name": model},
                "generation": {"max_new_tokens": settings.max_new_tokens},
                "compute": {
                    "batch_size": settings.batch_size,
                    "actors": settings.actors,
                    "batching": batching,
                },
                "progress": {"log_interval_s": 3600},
            }
        )

    sizes = write_mixed_shards(images, shards_uri, config("static", 0).storage)
    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    seconds = dict.fromkeys(MODES, 0.0)
    stats = {mode: EngineStats() for mode in MODES}
    texts: dict[str, list[str]] = {}
    for run, batching in enumerate((*MODES, *reversed(MODES))):
        timing = time_pipeline(config(batching, run))
        seconds[batching] += timing.seconds
        stats[batching].add(timing.engine)
        texts.setdefault(batching, [timing.texts[f"{i:07d}"] for i in range(len(images))])
    n = len(images)
    modes = {
        mode: {"ips": round(2 * n / seconds[mode], 3), **stats[mode].figures()} for mode in MODES
    }
    return {
        "workload": "mixed",
        "model": settings.model,
        "images": n,
        "shards": len(sizes),
        "shard_sizes": sorted(set(SHARD_SIZES)),
        "batch_size": settings.batch_size,
        "max_new_tokens": settings.max_new_tokens,
        "actors": settings.actors,
        **modes,
        "continuous_vs_static": round(modes["continuous"]["ips"] / modes["static"]["ips"], 3),
        "texts_equal": texts["continuous"] == texts["static"],
        "cpus": ray.cluster_resources().get("CPU", 0),
    }


def format_mixed(result: dict[str, Any]) -> str:
    columns = ("ips", "occupancy", "rows_per_step", "rows_per_encoder_call")
    lines = [
        f"mixed lines of 1-{MAX_CHARS} characters, {result['images']} images in shards of "
        f"{' and '.join(map(str, result['shard_sizes']))}, batch {result['batch_size']}, "
        f"model {result['model']}",
        f"{'batching':11}" + "".join(f"{name:>23}" for name in columns),
    ]
    for mode in MODES:
        lines.append(f"{mode:11}" + "".join(f"{result[mode][c] or 0:>23}" for c in columns))
    lines.append(
        f"continuous / static = {result['continuous_vs_static']:.2f}, texts equal: "
        f"{result['texts_equal']}, pixel bytes per image: "
        f"{result['continuous']['pixel_bytes_per_image']:.0f}"
    )
    return "\n".join(lines)
