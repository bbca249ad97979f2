"""The streamed trainer (`python -m jobs.train_streamed`): train on lines rendered while
the model trains.

For one machine with a GPU, many cores and no Ray, where rendering lines costs less
than storing them (the bundled model's GPU recipe): DataLoader worker processes render
lines as `shardscribe synth` does (`pipeline.synthetic.lines`: lines drawn alone and
lines cut by the segmenter from printed pages) and turn them into pixels and labels;
the model learns from them as they come, with `shardscribe train`'s objective, warm
start, CTC warm-up and clipping. When rendering falls behind the GPU, a step replays a recent batch
instead of waiting. The schedule runs on the clock (linear warmup, then a cosine to
zero at `--minutes`), so a run fits the time it is given. Only the model is written:
`save_pretrained` at the output every `--save-every-minutes` and at the end.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from model.images import pixel_arrays
from model.pixels import pixel_values, recipe_from_file
from pipeline.job_config import StorageSettings
from pipeline.synthetic.lines import SynthSettings, font_choices, page_lines, rendered_lines
from pipeline.synthetic.texts import word_list
from pipeline.training.build import build_model
from pipeline.training.objective import (
    OCRTrainingModule,
    ctc_head_warmup_end,
    encode_labels,
    mixed_precision,
    optimizer_step,
    trim_labels,
)
from pipeline.training.saving import save_model, throughput

log = logging.getLogger(__name__)
CHUNK = 64  # lines a worker renders and encodes at once (the processor is per call)


class RenderedExamples(IterableDataset):
    """Endless batches of (pixel_values float16, labels), each worker with its own seed;
    a shuffle buffer mixes the lines of one page with other lines."""

    def __init__(self, synth: SynthSettings, processor, tokenizer, max_tokens: int, batch: int):
        self.synth, self.processor, self.tokenizer = synth, processor, tokenizer
        self.max_tokens, self.batch = max_tokens, batch
        with tempfile.TemporaryDirectory() as directory:
            processor.save_pretrained(directory)
            self.recipe = recipe_from_file(Path(directory) / "preprocessor_config.json")
        if self.recipe is None:
            log.warning("pixels from the processor itself: model.pixels does not cover it")

    def _pixels(self, images: list[Image.Image]) -> np.ndarray:
        """The pixels `run` gives the model: the processor's Pillow backend, reproduced by
        `model.pixels` (a GPU machine's torchvision backend resizes a little otherwise)."""
        if self.recipe is None:
            return pixel_arrays(images, self.processor)
        return pixel_values(images, self.recipe)

    def __iter__(self):
        worker = get_worker_info()
        rng = random.Random(self.synth.seed * 1000 + (worker.id if worker else 0))
        words, families = word_list(self.synth.words), font_choices(self.synth)
        plain = rendered_lines(self.synth, rng, words, families)
        pages = page_lines(self.synth, rng, words, families)
        pool: list[tuple[torch.Tensor, torch.Tensor]] = []
        while True:
            lines = [
                next(pages if rng.random() < self.synth.page_lines else plain) for _ in range(CHUNK)
            ]
            encoded = encode_labels([text for text, _ in lines], self.tokenizer, self.max_tokens)
            fits = ~encoded.too_long
            kept = [image.convert("RGB") for (_, image), ok in zip(lines, fits, strict=True) if ok]
            pixels = torch.from_numpy(self._pixels(kept)).half()
            pool += zip(pixels, torch.from_numpy(encoded.labels[fits]), strict=True)
            while len(pool) >= 4 * self.batch:
                rng.shuffle(pool)
                chosen, pool = pool[: self.batch], pool[self.batch :]
                yield tuple(torch.stack(column) for column in zip(*chosen, strict=True))


@dataclass(frozen=True)
class StreamSettings:
    output: str
    init_from: str | None
    encoder: str
    decoder: str
    minutes: float
    batch_size: int
    learning_rate: float
    warmup_steps: int
    ctc_weight: float
    ctc_warmup_steps: int
    max_target_tokens: int
    workers: int
    replay: int  # recent batches kept on the device for steps that find no fresh one
    save_every_minutes: float
    seed: int
    page_lines: float
    hard: float = 0.0  # share of lines given kinds of hard scan (`synthetic.degradations`)


def _feed(loader: DataLoader, fresh: queue.Queue, stop: threading.Event) -> None:
    for batch in loader:
        while not stop.is_set():
            try:
                fresh.put(batch, timeout=1)
                break
            except queue.Full:
                continue
        if stop.is_set():
            return


def train(settings: StreamSettings) -> dict:
    torch.manual_seed(settings.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parts = build_model(
        encoder=settings.encoder, decoder=settings.decoder, init_from=settings.init_from
    )
    module = OCRTrainingModule(parts.model, settings.ctc_weight, parts.ctc_head).to(device)
    warm_until = ctc_head_warmup_end(
        settings.ctc_weight,
        settings.ctc_warmup_steps,
        bool(settings.init_from) and parts.ctc_head is None,
    )
    # A new CTC head starts from nothing while a warm-started model only adjusts: the head
    # learns at ten times the model's rate, both on the same schedule.
    head = list(module.ctc_head.parameters()) if module.ctc_head is not None else []
    optimizer = torch.optim.AdamW(
        [
            {"params": list(module.model.parameters()), "lr": settings.learning_rate},
            {"params": head, "lr": settings.learning_rate * 10},
        ]
    )
    started = time.monotonic()
    total_s = settings.minutes * 60

    def scale(step: int) -> float:
        if step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps
        done = min((time.monotonic() - started) / total_s, 1.0)
        return 0.5 * (1 + math.cos(math.pi * done))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, scale)
    autocast, amp_dtype = mixed_precision("auto", device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    synth = SynthSettings(seed=settings.seed, page_lines=settings.page_lines, hard=settings.hard)
    examples = RenderedExamples(
        synth, parts.image_processor, parts.tokenizer, settings.max_target_tokens,
        settings.batch_size,
    )  # fmt: skip
    loader = DataLoader(
        examples, batch_size=None, num_workers=settings.workers, prefetch_factor=4,
        persistent_workers=settings.workers > 0,
    )  # fmt: skip
    fresh: queue.Queue = queue.Queue(maxsize=8)
    stop = threading.Event()
    threading.Thread(target=_feed, args=(loader, fresh, stop), daemon=True).start()
    recent: list[tuple[torch.Tensor, torch.Tensor]] = []
    step = fresh_steps = 0
    last_log = last_save = time.monotonic()
    losses = []
    module.head_only = warm_until > 0
    module.train()
    while time.monotonic() - started < total_s:
        try:
            pixels, labels = fresh.get(timeout=0 if recent else None)
            batch = (pixels.to(device, non_blocking=True), labels.to(device))
            recent = [*recent[-(settings.replay - 1) :], batch] if settings.replay else [batch]
            fresh_steps += 1
        except queue.Empty:
            batch = random.choice(recent)
        pixels, labels = batch
        with autocast:
            loss, ce, ctc = module(pixels.float(), trim_labels(labels))
        scaler.scale(loss).backward()
        optimizer_step(module, optimizer, scheduler, scaler, 1.0)
        step += 1
        losses.append((ce.detach(), ctc.detach()))
        if step == warm_until:
            module.head_only = False
        if time.monotonic() - last_log > 30:
            ce_mean = float(torch.stack([c for c, _ in losses]).mean())
            ctc_mean = float(torch.stack([c for _, c in losses]).mean())
            elapsed = time.monotonic() - started
            log.info(
                "step %d (%d fresh) ce %.4f ctc %.4f lr %.2e %.2f steps/s %.0f images/s",
                step, fresh_steps, ce_mean, ctc_mean, scheduler.get_last_lr()[0],
                step / elapsed, step * settings.batch_size / elapsed,
            )  # fmt: skip
            losses, last_log = [], time.monotonic()
        if time.monotonic() - last_save > settings.save_every_minutes * 60:
            _save(parts, module, settings, step, fresh_steps, started)
            last_save = time.monotonic()
    stop.set()
    return _save(parts, module, settings, step, fresh_steps, started)


def _save(
    parts, module: OCRTrainingModule, settings: StreamSettings, step, fresh, started: float
) -> dict:
    elapsed = time.monotonic() - started
    summary = {
        "steps": step,
        "fresh_batches": fresh,
        "images_seen": step * settings.batch_size,
        "images_rendered": fresh * settings.batch_size,
        "throughput": throughput(step, elapsed, settings.batch_size),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "settings": asdict(settings),
    }
    save_model(
        parts, summary, settings.output, settings.max_target_tokens, StorageSettings(),
        module.ctc_head,
    )  # fmt: skip
    return summary
