"""`shardscribe train`: Ray Train (`TorchTrainer`) over image-text shards streamed by
Ray Data, validation by held-out shards, checkpoints to any fsspec URL, resume on rerun.

A rerun with the same checkpoint location resumes from the latest checkpoint (Ray
Train keeps a snapshot of its checkpoints there); the data order restarts at an
epoch boundary. The run ends with `save_pretrained` of the model, image processor and
tokenizer at the output, plus `training.json` (settings, steps, evaluations).
"""

from __future__ import annotations

import json
import logging
import posixpath
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
import ray.train
import ray.train.torch
import torch
from transformers import get_scheduler

from model.metrics import ErrorCounts
from pipeline.cluster import connect_ray, shared_cpu_threads
from pipeline.storage import absolute_url, is_local, open_filesystem
from pipeline.training.build import build_model
from pipeline.training.config import TrainConfig
from pipeline.training.data import count_examples, examples_dataset, split_shards
from pipeline.training.objective import (
    IGNORE_INDEX,
    OCRTrainingModule,
    load_state,
    recognise,
    save_state,
    trim_labels,
)

log = logging.getLogger(__name__)
SUMMARY_FILE = "training.json"


class TrainingError(RuntimeError):
    """Training stopped: a worker failed (the message has its error)."""


def run_training(config: TrainConfig) -> dict[str, Any]:
    """Train, evaluate, checkpoint, save the model at `config.output.uri`; the summary."""
    config = _absolute_local_paths(config)
    train_shards, validation_shards = split_shards(config)
    connect_ray(config.compute.ray_address, dashboard=True)
    datasets = {"train": examples_dataset(train_shards, config, shuffle=True)}
    if validation_shards:
        datasets["validation"] = examples_dataset(validation_shards, config, shuffle=False)
    total_steps = config.training.max_steps or _steps_for_epochs(config, train_shards)
    use_gpu = _use_gpu(config)
    log.info(
        "training on %d shard(s), validating on %d, %d steps, %d worker(s)%s",
        len(train_shards),
        len(validation_shards),
        total_steps,
        config.compute.workers,
        " with GPUs" if use_gpu else "",
    )
    trainer = ray.train.torch.TorchTrainer(
        _train_loop,
        train_loop_config={
            "config": config,
            "total_steps": total_steps,
            "threads": None if use_gpu else _threads(config),
            "shards": {"train": len(train_shards), "validation": len(validation_shards)},
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.compute.workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": config.compute.cpus_per_worker},
        ),
        run_config=_run_config(config),
        datasets=datasets,
    )
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as error:
        raise TrainingError(f"training failed: {error}") from error
    log.info("model saved at %s; last evaluation: %s", config.output.uri, result.metrics)
    return dict(result.metrics)


def _absolute_local_paths(config: TrainConfig) -> TrainConfig:
    """Ray Train workers run in their own directory: a relative path must not reach them."""

    def absolute(uri: str | None) -> str | None:
        return None if uri is None else absolute_url(uri)

    return config.model_copy(
        update={
            "input": config.input.model_copy(update={"uri": absolute(config.input.uri)}),
            "output": config.output.model_copy(
                update={
                    "uri": absolute(config.output.uri),
                    "checkpoints_uri": absolute(config.output.checkpoints_uri),
                }
            ),
        }
    )


def _steps_for_epochs(config: TrainConfig, shards) -> int:
    rows = count_examples(shards, config)
    per_step = (
        config.training.batch_size * config.compute.workers * config.training.grad_accumulation
    )
    return max(1, config.training.epochs * (rows // per_step))


def _use_gpu(config: TrainConfig) -> bool:
    if config.compute.use_gpu is not None:
        return config.compute.use_gpu
    return ray.cluster_resources().get("GPU", 0) > 0


def _threads(config: TrainConfig) -> int:
    """The cluster's cores shared out among the workers, less one for Ray Data's reading
    and its coordinator: OpenMP threads that lose their core to another process wait
    at every barrier (measured on 2 cores: 1 thread 1.45 batches/s, 2 threads 0.86)."""
    if config.compute.threads_per_worker:
        return config.compute.threads_per_worker
    return shared_cpu_threads(config.compute.workers, keep_free=1)


def _run_config(config: TrainConfig) -> ray.train.RunConfig:
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


@dataclass
class _LossWindow:
    """Mean losses since the last log line."""

    sums: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "ce": 0.0, "ctc": 0.0})
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    data_wait_s: float = 0.0  # time spent waiting for the next batch: the input is too slow

    def add(self, loss: torch.Tensor, ce: torch.Tensor, ctc: torch.Tensor) -> None:
        for name, value in (("loss", loss), ("ce", ce), ("ctc", ctc)):
            self.sums[name] += float(value)
        self.batches += 1

    def means(self) -> dict[str, float]:
        return {name: total / max(self.batches, 1) for name, total in self.sums.items()}


def _autocast(setting: str, device: torch.device):
    if device.type != "cuda" or setting == "no":
        return nullcontext(), None
    if setting == "auto":
        setting = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if setting == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype), dtype


def _train_loop(loop_config: dict[str, Any]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config: TrainConfig = loop_config["config"]
    total_steps: int = loop_config["total_steps"]
    if loop_config["threads"]:
        torch.set_num_threads(loop_config["threads"])
    settings = config.training
    torch.manual_seed(settings.seed)
    parts = build_model(
        config.model.name, config.model.encoder, config.model.decoder, config.model.init_from
    )
    module = OCRTrainingModule(parts.model, settings.ctc_weight)
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    scheduler = get_scheduler(
        settings.schedule, optimizer, settings.warmup_steps, num_training_steps=total_steps
    )
    step = start_step = _resume(module, optimizer, scheduler)
    wrapped = ray.train.torch.prepare_model(module)
    device = ray.train.torch.get_device()
    autocast, amp_dtype = _autocast(settings.mixed_precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    history: list[dict[str, Any]] = []
    window, micro = _LossWindow(), 0
    train_data = ray.train.get_dataset_shard("train")
    while step < total_steps:
        wrapped.train()
        waited_from = time.monotonic()
        for batch in train_data.iter_torch_batches(
            batch_size=settings.batch_size,
            # Shards arrive in random order; this mixes the rows of neighbouring blocks.
            local_shuffle_buffer_size=4 * settings.batch_size,
            local_shuffle_seed=settings.seed + step,
            device=device,
            drop_last=True,
        ):
            window.data_wait_s += time.monotonic() - waited_from
            with autocast:
                loss, ce, ctc = wrapped(batch["pixel_values"], trim_labels(batch["labels"]))
            scaler.scale(loss / settings.grad_accumulation).backward()
            window.add(loss.detach(), ce.detach(), ctc.detach())
            micro += 1
            if micro % settings.grad_accumulation:
                continue
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(module.parameters(), settings.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            if step % config.evaluation.log_every_steps == 0:
                _log_progress(step, total_steps, window, scheduler)
                window = _LossWindow()
            if step % config.evaluation.every_steps == 0 or step == total_steps:
                metrics = {"step": step}
                if loop_config["shards"]["validation"]:
                    metrics |= _evaluate(module, parts.tokenizer, config, device)
                history.append(metrics)
                log.info("evaluation at step %d: %s", step, _format(metrics))
                _report(metrics, module, optimizer, scheduler)
                wrapped.train()
            if step >= total_steps:
                break
            waited_from = time.monotonic()
    if ray.train.get_context().get_world_rank() == 0:
        summary = {
            "steps": step,
            "resumed_from_step": start_step,
            "shards": loop_config["shards"],
            "config": config.model_dump(mode="json", exclude={"storage"}),
            "evaluations": history,
        }
        _save_model(parts, summary, config)


def _resume(module: OCRTrainingModule, optimizer, scheduler) -> int:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        step = load_state(Path(directory), module, optimizer, scheduler)
    log.info("resumed from the checkpoint at step %d", step)
    return step


def _log_progress(step: int, total: int, window: _LossWindow, scheduler) -> None:
    means = window.means()
    elapsed = max(time.monotonic() - window.started, 1e-9)
    log.info(
        "step %d/%d loss %.4f (ce %.4f ctc %.4f) lr %.2e %.2f batches/s, %.0f%% waiting for data",
        step,
        total,
        means["loss"],
        means["ce"],
        means["ctc"],
        scheduler.get_last_lr()[0],
        window.batches / elapsed,
        100 * window.data_wait_s / elapsed,
    )


def _format(metrics: dict[str, Any]) -> str:
    return " ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )


@torch.no_grad()
def _evaluate(module: OCRTrainingModule, tokenizer, config: TrainConfig, device) -> dict:
    """Cross-entropy and greedy (or beam) CER / WER on up to `max_rows` validation rows,
    summed over the workers."""
    context = ray.train.get_context()
    shard = ray.train.get_dataset_shard("validation")
    module.eval()
    rows_each = -(-config.evaluation.max_rows // context.get_world_size())
    counts, loss_sum, seen = ErrorCounts(), 0.0, 0
    for batch in shard.iter_torch_batches(batch_size=config.training.batch_size, device=device):
        pixels = batch["pixel_values"][: rows_each - seen]
        labels = trim_labels(batch["labels"][: rows_each - seen])
        _, ce, _ = module(pixels, labels)
        loss_sum += float(ce) * len(labels)
        predictions = recognise(
            module.model,
            tokenizer,
            pixels,
            config.evaluation.max_new_tokens,
            config.evaluation.num_beams,
        )
        references = tokenizer.batch_decode(
            labels.masked_fill(labels == IGNORE_INDEX, tokenizer.pad_token_id),
            skip_special_tokens=True,
        )
        counts.add(predictions, references)
        seen += len(labels)
        if seen >= rows_each:
            break
    totals = _sum_over_workers(
        [counts.char_edits, counts.chars, counts.word_edits, counts.words, counts.exact, seen],
        device,
    )
    counts = ErrorCounts(*totals[:5], lines=totals[5])
    val_loss = _sum_over_workers([loss_sum], device, dtype=torch.float64)[0]
    return {
        "val_loss": val_loss / max(counts.lines, 1),
        "cer": counts.cer,
        "wer": counts.wer,
        "exact_match": counts.exact_match,
        "val_rows": counts.lines,
    }


def _sum_over_workers(values: list, device, dtype=torch.int64) -> list:
    tensor = torch.tensor(values, dtype=dtype, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return [v.item() for v in tensor]


def _report(metrics: dict, module: OCRTrainingModule, optimizer, scheduler) -> None:
    """Every worker reports; only rank 0 attaches the checkpoint (weights are in sync)."""
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            save_state(Path(directory), module, optimizer, scheduler, metrics["step"])
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)


def _save_model(parts, summary: dict, config: TrainConfig) -> None:
    """save_pretrained of model, processor and tokenizer, then copy to the output URL."""
    fs, root = open_filesystem(config.output.uri, config.storage)
    # Targets were at most this long, so `run` needs no --max-new-tokens for this model.
    parts.model.generation_config.max_new_tokens = config.model.max_target_tokens
    with tempfile.TemporaryDirectory() as directory:
        parts.model.save_pretrained(directory)
        parts.image_processor.save_pretrained(directory)
        parts.tokenizer.save_pretrained(directory)
        (Path(directory) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        fs.makedirs(root, exist_ok=True)
        for file in sorted(Path(directory).iterdir()):
            fs.put_file(str(file), posixpath.join(root, file.name))
    log.info("saved the trained model to %s", config.output.uri)
