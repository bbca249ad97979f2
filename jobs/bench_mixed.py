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

import random
import uuid
from typing import Any

import ray

from jobs.bench import BENCH_SHARD_NAME, BenchSettings, image_samples, model_path, time_pipeline
from model.engine_stats import EngineStats
from pipeline.config_loading import validate_config
from pipeline.storage import join
from pipeline.synthetic.drawing import line_png
from pipeline.synthetic.line_shards import write_line_shards
from pipeline.synthetic.texts import evaluation_paragraphs, prose_line

SHARD_SIZES = (5, 5, 5, 5, 40)  # small shards beside large ones, in turn
MAX_CHARS = 80
MODES = ("static", "continuous")


def mixed_lines(count: int, seed: int) -> list[str]:
    """Prose lines of 1 to `MAX_CHARS` characters, lengths uniform."""
    rng = random.Random(seed)
    paragraphs = evaluation_paragraphs()
    return [prose_line(paragraphs, rng, rng.randint(1, MAX_CHARS)) for _ in range(count)]


def run_mixed_bench(settings: BenchSettings) -> dict[str, Any]:
    settings.workdir.mkdir(parents=True, exist_ok=True)
    model = model_path(settings)
    images = [line_png(text) for text in mixed_lines(settings.images, settings.seed)]
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

    storage = config("static", 0).storage
    shards = write_line_shards(
        shards_uri, image_samples(images), SHARD_SIZES, storage, BENCH_SHARD_NAME
    )
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
        "shards": len(shards),
        "shard_sizes": sorted(set(SHARD_SIZES)),
        "batch_size": settings.batch_size,
        "max_new_tokens": settings.max_new_tokens,
        "actors": settings.actors,
        **modes,
        "continuous_vs_static": round(modes["continuous"]["ips"] / modes["static"]["ips"], 3),
        "texts_equal": texts["continuous"] == texts["static"],
        "cpus": ray.cluster_resources().get("CPU", 0),
    }
