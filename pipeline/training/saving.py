"""The trained model's last step: `save_pretrained` of model, image processor and
tokenizer, with the run's summary beside them, at any path or fsspec URL. Needs no
Ray, so a run without it (`pipeline.training.streamed`) saves the same way."""

from __future__ import annotations

import json
import logging
import posixpath
import tempfile
from pathlib import Path

import torch

from model.drafting import save_ctc_head
from pipeline.job_config import StorageSettings
from pipeline.storage import open_filesystem

log = logging.getLogger(__name__)
SUMMARY_FILE = "training.json"


def save_model(
    parts,
    summary: dict,
    uri: str,
    max_target_tokens: int,
    storage: StorageSettings,
    ctc_head: torch.nn.Linear | None = None,
) -> None:
    """save_pretrained of model, processor and tokenizer, and the CTC head that drafts
    its readings where training had one, then copy to `uri`."""
    fs, root = open_filesystem(uri, storage)
    # Targets were at most this long, so `run` needs no --max-new-tokens for this model.
    parts.model.generation_config.max_new_tokens = max_target_tokens
    with tempfile.TemporaryDirectory() as directory:
        parts.model.save_pretrained(directory)
        parts.image_processor.save_pretrained(directory)
        parts.tokenizer.save_pretrained(directory)
        if ctc_head is not None:
            save_ctc_head(ctc_head, directory)
        (Path(directory) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        fs.makedirs(root, exist_ok=True)
        for file in sorted(Path(directory).iterdir()):
            fs.put_file(str(file), posixpath.join(root, file.name))
    log.info("saved the trained model to %s", uri)


def throughput(steps: int, seconds: float, images_per_step: int) -> dict[str, float]:
    """A run's training speed as `training.json` records it."""
    rate = steps / max(seconds, 1e-9)
    return {
        "steps_per_s": round(rate, 3),
        "images_per_s": round(rate * images_per_step, 1),
        "training_s": round(seconds, 1),
    }
