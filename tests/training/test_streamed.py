"""`python -m jobs.train_streamed`: training on lines rendered while it trains."""

from __future__ import annotations

import json
import subprocess
import sys

from model.generation import TextGenerator
from model.line_frames import uses_text_frames
from model.loading import load_model
from model.settings import GenerationSettings, ModelSettings


def test_a_short_streamed_run_saves_a_model_that_run_loads_and_reads_by_drafts(tmp_path):
    output = tmp_path / "model"
    command = [
        sys.executable, "-m", "jobs.train_streamed", "--output", str(output),
        "--encoder", "vit-line-tiny", "--decoder", "trocr-char-tiny", "--minutes", "0.25",
        "--batch-size", "8", "--workers", "1", "--page-lines", "0.5", "--ctc-weight", "0.5",
        "--max-target-tokens", "64", "--save-every-minutes", "0.1",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output / "training.json").read_text())
    assert summary["steps"] >= summary["fresh_batches"] > 0
    assert summary["images_seen"] == 8 * summary["steps"]
    assert summary["throughput"]["steps_per_s"] > 0
    loaded = load_model(ModelSettings(name=str(output)))
    assert loaded.model.generation_config.max_new_tokens == 64
    # a column-patch model trains on its text frames and ships the CTC head that drafts
    assert uses_text_frames(loaded.model)
    assert loaded.ctc_head is not None
    assert TextGenerator(loaded, GenerationSettings()).drafts
