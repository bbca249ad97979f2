"""`shardscribe demo`: sample shards, the bundled OCR model, the real pipeline, the results."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq

from model.bundled import DEFAULT_MODEL
from model.metrics import cer
from pipeline.config_loading import validate_config
from pipeline.output.status import format_status, output_status
from pipeline.run.runner import run_job
from pipeline.synthetic.demo_lines import write_sample_shards

log = logging.getLogger(__name__)


def run_demo(directory: Path) -> int:
    """Write 3 WebDataset shards of rendered text lines and read them with the bundled
    printed-lines model (trained here, offline), through the real pipeline."""
    directory = directory.resolve()
    shards = write_sample_shards(directory / "input")
    config = validate_config(
        {
            "input": {"uri": str(shards)},
            "output": {"uri": str(directory / "output")},
            "model": {"name": DEFAULT_MODEL},
            "progress": {"log_interval_s": 5},
        }
    )
    summary = run_job(config)
    files = sorted((directory / "output").glob("*.parquet"))
    print(f"\nfirst rows of {files[0]}:")
    for row in pq.read_table(files[0]).slice(0, 5).to_pylist():
        print(f"  {row['key']}: {row['text']!r} (true text: {row['txt']!r})")
    rows = [row for file in files for row in pq.read_table(file).to_pylist()]
    read = cer([row["text"] or "" for row in rows], [row["txt"] for row in rows])
    print(f"\ncharacter error rate over all {len(rows)} lines: {read:.1%}")
    print("\n" + format_status(output_status(config.output.uri, config.storage)))
    return summary.exit_code
