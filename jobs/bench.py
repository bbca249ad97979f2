"""`shardscribe bench`: the pipeline against bare batched generate and the naive loop.

All four run on the same model, images and generation settings:

- naive: for each image, the image processor and `generate` on that image alone;
- bare: every image decoded and preprocessed up front (not timed), then batched
  `generate` in this process: the limit of this design on one machine;
- cold bare: the script a user writes instead (`jobs/cold_bare.py`), as a fresh
  process: imports, model load, then decoding, preprocessing and batched `generate`;
- pipeline: `run_job` from shards to committed Parquet, with Ray already started and
  Ray Data's cluster helpers made (as on a cluster that has run a job before:
  `pipeline.cluster.prepare_ray_data`), so it pays for discovery, reading, decoding,
  actor start-up and model load, generation and commits.

The pipeline runs first, so that the driver's peak RSS is the pipeline's own.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import ray
import torch
import transformers

from model import GenerationSettings, ModelSettings, TextGenerator, decode_image, load_model
from model.engine_stats import EngineStats
from model.images import pixel_arrays
from model.tiny import SIZES, build_random_model
from pipeline.cluster import prepare_ray_data
from pipeline.config_loading import validate_config
from pipeline.job_config import JobConfig
from pipeline.run.runner import run_job
from pipeline.storage import join, open_filesystem
from pipeline.synthetic.demo_lines import line_images
from pipeline.synthetic.line_shards import LineSample, write_line_shards


@dataclass(frozen=True)
class BenchSettings:
    model: str  # a built-in size (tiny, small, base), a path or a hub id
    images: int
    batch_size: int
    num_beams: int
    max_new_tokens: int
    actors: int
    storage: str  # "local", or a URL prefix (s3://bucket/prefix) where the shards go
    workdir: Path
    images_per_shard: int = 16
    seed: int = 0


BENCH_SHARD_NAME = "part-{:05d}.tar"


def image_samples(images: list[bytes]) -> list[LineSample]:
    """The images as samples keyed by their index (`0000042`), without text."""
    return [LineSample(f"{i:07d}", data) for i, data in enumerate(images)]


def model_path(settings: BenchSettings) -> str:
    """A built-in size is built once under the work directory; anything else is used as is."""
    if settings.model not in SIZES:
        return settings.model
    path = settings.workdir / f"random-{settings.model}"
    if not (path / "config.json").exists():
        build_random_model(path, settings.model)
    return str(path)


def _job_config(settings: BenchSettings, model: str, shards_uri: str, output: str) -> JobConfig:
    return validate_config(
        {
            "input": {"uri": shards_uri},
            "output": {"uri": output},
            "model": {"name": model},
            "generation": {
                "max_new_tokens": settings.max_new_tokens,
                "num_beams": settings.num_beams,
            },
            "compute": {"batch_size": settings.batch_size, "actors": settings.actors},
            "progress": {"log_interval_s": 3600},
        }
    )


@dataclass(frozen=True)
class PipelineTiming:
    seconds: float  # the whole run
    startup_s: float  # from the start to the first committed shard
    startup_steps: dict[str, float]  # when each start-up step ended (RunSummary.startup)
    steady_ips: float | None  # images/s from the first commit to the last
    texts: dict[str, str]  # committed text by key
    engine: EngineStats  # what the actors' models computed


def time_pipeline(config: JobConfig) -> PipelineTiming:
    """Time a whole run; the commit times of the output files give its start-up (Ray
    workers, imports, model load) and its steady rate apart."""
    started = time.time()
    summary = run_job(config)
    seconds = time.time() - started
    if summary.failed:
        raise RuntimeError(f"the pipeline failed shards: {summary.failed}")
    fs, root = open_filesystem(config.output.uri, config.storage)
    texts, commits = {}, []
    for path in fs.glob(join(root, "*.parquet")):
        with fs.open(path, "rb") as handle:
            rows = pq.read_table(handle, columns=["key", "text"]).to_pylist()
        texts |= {row["key"]: row["text"] for row in rows}
        commits.append((fs.modified(path).timestamp(), len(rows)))
    commits.sort()
    (first, first_rows), last = commits[0], commits[-1][0]
    steady = (len(texts) - first_rows) / (last - first) if last > first else None
    steps = summary.startup_steps()
    return PipelineTiming(seconds, first - started, steps, steady, texts, summary.engine)


def time_bare(generator: TextGenerator, images: list[bytes], batch_size: int):
    """Seconds for batched generate on pixels prepared beforehand, and the texts."""
    processor = generator.loaded.image_processor
    pixels = pixel_arrays([decode_image(data) for data in images], processor)
    start = time.perf_counter()
    texts = []
    for begin in range(0, len(pixels), batch_size):
        texts += generator.generate(pixels[begin : begin + batch_size])
    return time.perf_counter() - start, texts


def time_naive(model: str, generation: GenerationSettings, images: list[bytes]) -> float:
    """Seconds for what a user writes first: per image, the processor and `generate`."""
    loaded = load_model(ModelSettings(name=model))
    start = time.perf_counter()
    with torch.inference_mode():
        for data in images:
            pixels = loaded.image_processor(images=decode_image(data), return_tensors="pt")
            loaded.model.generate(
                pixel_values=pixels.pixel_values, **generation.generate_overrides()
            )
    return time.perf_counter() - start


@dataclass(frozen=True)
class ColdBareTiming:
    seconds: float  # from the process's launch to its last batch
    startup_steps: dict[str, float]  # imported, loaded, first_batch: s from the launch
    texts: list[str]


def time_cold_bare(
    model: str, generation: GenerationSettings, images: Path, batch_size: int
) -> ColdBareTiming:
    """Run the user's script in a fresh process, timed from its launch."""
    spec = {
        "model": model,
        "images": str(images),
        "batch_size": batch_size,
        "generate": generation.generate_overrides(),
    }
    launched = time.time()
    command = [sys.executable, "-m", "jobs.cold_bare", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    steps = {step: round(out[step] - launched, 2) for step in ("imported", "loaded", "first_batch")}
    return ColdBareTiming(out["done"] - launched, steps, out["texts"])


def write_files(images: list[bytes], folder: Path) -> Path:
    """The images as PNG files, named in their order, for the cold script to read."""
    folder.mkdir(parents=True)
    for i, data in enumerate(images):
        (folder / f"{i:07d}.png").write_bytes(data)
    return folder


def run_bench(settings: BenchSettings) -> dict[str, Any]:
    settings.workdir.mkdir(parents=True, exist_ok=True)
    model = model_path(settings)
    images = line_images(settings.images, settings.seed)
    run = f"run-{uuid.uuid4().hex[:8]}"
    local = settings.storage == "local"
    base = str(settings.workdir / run) if local else join(settings.storage, run)
    shards_uri = join(base, "shards")
    config = _job_config(settings, model, shards_uri, join(base, "output"))
    samples = image_samples(images)
    sizes = [settings.images_per_shard]
    write_line_shards(shards_uri, samples, sizes, config.storage, BENCH_SHARD_NAME)

    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    prepare_ray_data()
    pipeline = time_pipeline(config)
    driver_peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    folder = write_files(images, settings.workdir / run / "images")
    cold = time_cold_bare(model, config.generation, folder, settings.batch_size)
    steady = pipeline.steady_ips
    loaded = load_model(config.model)
    generator = TextGenerator(loaded, config.generation)
    bare_s, bare_texts = time_bare(generator, images, settings.batch_size)
    naive_s = time_naive(model, config.generation, images)
    n = len(images)
    pipeline_texts = [pipeline.texts[f"{i:07d}"] for i in range(n)]
    return {
        "model": settings.model,
        "images": n,
        "images_per_shard": settings.images_per_shard,
        "batch_size": settings.batch_size,
        "num_beams": settings.num_beams,
        "max_new_tokens": settings.max_new_tokens,
        "actors": settings.actors,
        "storage": settings.storage,
        "naive_ips": round(n / naive_s, 3),
        "bare_ips": round(n / bare_s, 3),
        "cold_bare_ips": round(n / cold.seconds, 3),
        "pipeline_ips": round(n / pipeline.seconds, 3),
        "pipeline_vs_bare": round(bare_s / pipeline.seconds, 3),
        "pipeline_vs_cold_bare": round(cold.seconds / pipeline.seconds, 3),
        "bare_vs_naive": round(naive_s / bare_s, 3),
        "pipeline_startup_s": round(pipeline.startup_s, 2),
        "pipeline_startup_steps_s": pipeline.startup_steps,
        "cold_bare_startup_s": cold.startup_steps["first_batch"],
        "cold_bare_startup_steps_s": cold.startup_steps,
        "pipeline_steady_ips": steady and round(steady, 3),
        "pipeline_steady_vs_bare": steady and round(steady * bare_s / n, 3),
        "pipeline_equals_bare": pipeline_texts == bare_texts,
        "pipeline_equals_cold_bare": pipeline_texts == cold.texts,
        "driver_peak_rss_mb": round(driver_peak_rss_mb, 1),
        "device": str(loaded.device),
        "device_name": _device_name(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "cpus": ray.cluster_resources().get("CPU", 0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "ray": ray.__version__,
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
