"""`shardscribe train`: Ray Train (`TorchTrainer`) over image-text shards streamed by
Ray Data, validation by held-out shards, checkpoints to any fsspec URL, resume on rerun.

A rerun with the same checkpoint location resumes from the latest checkpoint (Ray
Train keeps a snapshot of its checkpoints there); the data order restarts at an
epoch boundary. The run ends with `save_pretrained` of the model, image processor and
tokenizer at the output, plus `training.json` (settings, steps, evaluations).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
from transformers import get_scheduler

from pipeline.cluster import connect_ray, shared_cpu_threads
from pipeline.storage import absolute_url
from pipeline.training.build import build_model
from pipeline.training.checkpoints import report, resume, run_config
from pipeline.training.data import count_examples, examples_dataset, split_shards
from pipeline.training.evaluation import evaluate
from pipeline.training.objective import (
    OCRTrainingModule,
    ctc_head_warmup_end,
    mixed_precision,
    optimizer_step,
    trim_labels,
)
from pipeline.training.saving import save_model, throughput
from pipeline.training.train_config import TrainConfig

log = logging.getLogger(__name__)


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
        run_config=run_config(config),
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


@dataclass
class _LossWindow:
    """Mean losses since the last log line."""

    sums: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "ce": 0.0, "ctc": 0.0})
    batches: int = 0
    steps: int = 0
    started: float = field(default_factory=time.monotonic)
    data_wait_s: float = 0.0  # time spent waiting for the next batch: the input is too slow

    def add(self, loss: torch.Tensor, ce: torch.Tensor, ctc: torch.Tensor) -> None:
        for name, value in (("loss", loss), ("ce", ce), ("ctc", ctc)):
            self.sums[name] += float(value)
        self.batches += 1

    def means(self) -> dict[str, float]:
        return {name: total / max(self.batches, 1) for name, total in self.sums.items()}


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
    module = OCRTrainingModule(parts.model, settings.ctc_weight, parts.ctc_head)
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    scheduler = get_scheduler(
        settings.schedule, optimizer, settings.warmup_steps, num_training_steps=total_steps
    )
    step = start_step = resume(module, optimizer, scheduler)
    warmup_head_until = ctc_head_warmup_end(
        settings.ctc_weight,
        settings.ctc_warmup_steps,
        warm_start=bool(config.model.name or config.model.init_from) and parts.ctc_head is None,
    )
    module.head_only = step < warmup_head_until
    wrapped = ray.train.torch.prepare_model(module)
    device = ray.train.torch.get_device()
    autocast, amp_dtype = mixed_precision(settings.mixed_precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    history: list[dict[str, Any]] = []
    window, micro = _LossWindow(), 0
    # Examples per optimizer step over all workers: the figure images/s is made of.
    images_per_step = settings.batch_size * settings.grad_accumulation * config.compute.workers
    speed = _Throughput(images_per_step)
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
            optimizer_step(module, optimizer, scheduler, scaler, settings.grad_clip)
            step += 1
            window.steps += 1
            if step == warmup_head_until:
                module.head_only = False
                log.info("step %d: the CTC head is warm; its loss now trains the encoder", step)
            if step % config.evaluation.log_every_steps == 0:
                _log_progress(step, total_steps, window, scheduler, speed)
                window = _LossWindow()
            if step % config.evaluation.every_steps == 0 or step == total_steps:
                metrics, evaluation_started = {"step": step}, time.monotonic()
                if loop_config["shards"]["validation"]:
                    metrics |= evaluate(module, parts.tokenizer, config, device)
                history.append(metrics)
                log.info("evaluation at step %d: %s", step, _format(metrics))
                report(metrics, module, optimizer, scheduler)
                wrapped.train()
                # Evaluation and checkpoint are not training: the speed leaves them out.
                window.started += time.monotonic() - evaluation_started
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
            "throughput": speed.summary(),
        }
        save_model(
            parts,
            summary,
            config.output.uri,
            config.model.max_target_tokens,
            config.storage,
            module.ctc_head,
        )


@dataclass
class _Throughput:
    """Training speed over the logged windows (start-up and evaluations left out)."""

    images_per_step: int  # examples per optimizer step over all workers
    steps: int = 0
    seconds: float = 0.0

    def add(self, window: _LossWindow) -> tuple[float, float]:
        """Count the window in; its steps/s and images/s."""
        elapsed = max(time.monotonic() - window.started, 1e-9)
        self.steps += window.steps
        self.seconds += elapsed
        return window.steps / elapsed, window.steps * self.images_per_step / elapsed

    def summary(self) -> dict[str, float]:
        return throughput(self.steps, self.seconds, self.images_per_step)


def _log_progress(
    step: int, total: int, window: _LossWindow, scheduler, speed: _Throughput
) -> None:
    means = window.means()
    elapsed = max(time.monotonic() - window.started, 1e-9)
    steps_per_s, images_per_s = speed.add(window)
    log.info(
        "step %d/%d loss %.4f (ce %.4f ctc %.4f) lr %.2e %.2f steps/s %.1f images/s, "
        "%.0f%% waiting for data",
        step,
        total,
        means["loss"],
        means["ce"],
        means["ctc"],
        scheduler.get_last_lr()[0],
        steps_per_s,
        images_per_s,
        100 * window.data_wait_s / elapsed,
    )


def _format(metrics: dict[str, Any]) -> str:
    return " ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )
