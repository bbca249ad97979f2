"""Where training state goes and comes back from: Ray Train checkpoints (weights, CTC
head, optimizer, schedule, step) under `output.checkpoints()`, and resume on rerun."""

from __future__ import annotations

import logging
import posixpath
import tempfile
from pathlib import Path

import pyarrow.fs
import ray.train

from pipeline.storage import is_local, open_filesystem
from pipeline.training.objective import OCRTrainingModule, load_state, save_state
from pipeline.training.train_config import TrainConfig

log = logging.getLogger(__name__)


def run_config(config: TrainConfig) -> ray.train.RunConfig:
    """Checkpoints under `output.checkpoints()`: the last path part is the run's name, so
    a rerun finds its snapshot there and resumes."""
    fs, path = open_filesystem(config.output.checkpoints(), config.storage)
    parent, name = posixpath.split(path.rstrip("/"))
    filesystem = None if is_local(fs) else pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))
    return ray.train.RunConfig(
        name=name,
        storage_path=parent,
        storage_filesystem=filesystem,
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.output.keep_checkpoints),
    )


def resume(module: OCRTrainingModule, optimizer, scheduler) -> int:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        step = load_state(Path(directory), module, optimizer, scheduler)
    log.info("resumed from the checkpoint at step %d", step)
    return step


def report(metrics: dict, module: OCRTrainingModule, optimizer, scheduler) -> None:
    """Every worker reports; only rank 0 attaches the checkpoint (weights are in sync)."""
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            save_state(Path(directory), module, optimizer, scheduler, metrics["step"])
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)
