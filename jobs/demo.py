"""`shardscribe demo`: sample shards, an offline model, the real pipeline, the results."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq

from jobs.samples import write_sample_shards
from model import build_tiny_model
from pipeline.config import validate_config
from pipeline.runner import run_job
from pipeline.status import format_status, output_status

log = logging.getLogger(__name__)


def run_demo(directory: Path) -> int:
    """Write 3 WebDataset shards of rendered text lines, build a tiny model from configs
    (random weights: it shows the machinery, not OCR quality), and run the job."""
    directory = directory.resolve()
    shards = write_sample_shards(directory / "input")
    model_dir = directory / "model"
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir)
    config = validate_config(
        {
            "input": {"uri": str(shards)},
            "output": {"uri": str(directory / "output")},
            "model": {"name": str(model_dir)},
            "generation": {"max_new_tokens": 24},
            "progress": {"log_interval_s": 5},
        }
    )
    summary = run_job(config)
    first = sorted((directory / "output").glob("*.parquet"))[0]
    print(f"\nfirst rows of {first}:")
    for row in pq.read_table(first).slice(0, 5).to_pylist():
        print(
            f"  {row['key']}: text={row['text']!r} error={row['error']} (true text: {row['txt']!r})"
        )
    print("\n" + format_status(output_status(config.output.uri, config.storage)))
    return summary.exit_code
