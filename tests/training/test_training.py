"""`shardscribe train` end to end on Ray Train: a small set learned exactly and run
through `shardscribe run`, a killed run resumed from its checkpoint, bad input named."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from model.loading import load_model
from model.settings import ModelSettings
from pipeline.synthetic.lines import SynthSettings, write_synth_shards
from pipeline.training.build import build_model, load_processors_for
from pipeline.training.objective import (
    OCRTrainingModule,
    encode_labels,
    optimizer_step,
    recognise,
    trim_labels,
)
from tests.support.cli import shardscribe
from tests.support.soak import run_processes

TINY = ["--encoder", "vit-line-tiny", "--decoder", "trocr-char-tiny"]
# Settings measured to learn 16 short lines exactly with the tiny model in ~250 steps.
MEMORISE = [
    "--learning-rate", "3e-3", "--warmup-steps", "0", "--schedule", "constant_with_warmup",
    "--ctc-weight", "0.5", "--batch-size", "16", "--log-every-steps", "50",
]  # fmt: skip


def _shards(directory: Path, lines: int, per_shard: int, seed: int = 0) -> Path:
    write_synth_shards(
        str(directory), SynthSettings(lines=lines, per_shard=per_shard, seed=seed, max_chars=10)
    )
    return directory


@pytest.fixture(scope="module")
def memorised(tmp_path_factory) -> tuple[Path, Path]:
    """(input, model): 16 lines in one shard, trained on until learned."""
    root = tmp_path_factory.mktemp("memorise")
    data = _shards(root / "data", 16, 16)
    model = root / "model"
    result = shardscribe(
        "train", "--input", str(data), "--output", str(model), *TINY, *MEMORISE,
        "--validation-shards", "0", "--max-steps", "300", "--every-steps", "300",
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return data, model


def _texts_and_images(shard_dir: Path) -> tuple[list[str], list[Image.Image]]:
    import tarfile

    texts, images = [], []
    for tar_path in sorted(shard_dir.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        for name in sorted(n for n in members if n.endswith(".png")):
            images.append(Image.open(io.BytesIO(members[name])).convert("RGB"))
            texts.append(members[name.removesuffix(".png") + ".txt"].decode())
    return texts, images


def test_a_small_set_is_learned_exactly_and_runs_through_the_pipeline(memorised, tmp_path):
    data, model = memorised
    texts, _ = _texts_and_images(data)
    out = tmp_path / "out"
    result = shardscribe(
        "run", "--input", str(data), "--output", str(out), "--model", str(model),
        "--max-new-tokens", "16",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pq.read_table(out / "lines-00000.parquet").to_pylist()
    assert [row["text"] for row in rows] == texts
    assert [row["txt"] for row in rows] == texts


def test_the_pipeline_matches_generate_on_the_trained_model(memorised, tmp_path):
    """Parity on lines the model never saw (whatever it reads, run says the same)."""
    _, model = memorised
    data = _shards(tmp_path / "unseen", 12, 6, seed=7)
    out = tmp_path / "out"
    result = shardscribe(
        "run", "--input", str(data), "--output", str(out), "--model", str(model),
        "--max-new-tokens", "16", "--batch-size", "5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    got = [r["text"] for f in sorted(out.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    loaded = load_model(ModelSettings(name=str(model)))
    _, images = _texts_and_images(data)
    pixels = loaded.image_processor(images=images, return_tensors="pt").pixel_values
    assert got == recognise(loaded.model, loaded.tokenizer, pixels, max_new_tokens=16)


def test_training_summary_records_steps_and_settings(memorised):
    _, model = memorised
    summary = json.loads((model / "training.json").read_text())
    assert summary["steps"] == 300
    assert summary["resumed_from_step"] == 0
    assert summary["shards"] == {"train": 1, "validation": 0}
    assert summary["config"]["model"]["encoder"] == "vit-line-tiny"
    assert "storage" not in summary["config"]
    # Speed over the six logged windows of 50 steps, batch 16.
    speed = summary["throughput"]
    assert speed["steps_per_s"] > 0 and speed["training_s"] > 0
    assert speed["images_per_s"] == pytest.approx(16 * speed["steps_per_s"], rel=0.01)
    assert speed["steps_per_s"] * speed["training_s"] == pytest.approx(300, rel=0.01)
    # Targets were at most max_target_tokens long: run needs no --max-new-tokens.
    generation = json.loads((model / "generation_config.json").read_text())
    assert generation["max_new_tokens"] == summary["config"]["model"]["max_target_tokens"] == 64


def _latest_checkpoint_step(checkpoints: Path) -> int:
    snapshot = checkpoints / "checkpoint_manager_snapshot.json"
    if not snapshot.exists():
        return 0
    results = json.loads(snapshot.read_text())["checkpoint_results"]
    return max((r["metrics"]["step"] for r in results), default=0)


def test_a_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    data = _shards(tmp_path / "data", 96, 32)
    model = tmp_path / "model"
    command = [
        sys.executable, "-m", "jobs", "train", "--input", str(data), "--output", str(model),
        *TINY, "--batch-size", "8", "--max-steps", "400", "--every-steps", "20",
        "--max-rows", "8", "--log-every-steps", "20",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while _latest_checkpoint_step(model / "checkpoints") < 40:
        assert process.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and the local Ray it started
    process.wait()
    # Ray's workers leave the driver's process group: until they are gone too, one of them
    # may still record a checkpoint.
    deadline = time.monotonic() + 30
    while run_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed_at = _latest_checkpoint_step(model / "checkpoints")
    assert not (model / "training.json").exists()

    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((model / "training.json").read_text())
    assert summary["resumed_from_step"] == killed_at
    assert summary["steps"] == 400
    assert f"resumed from the checkpoint at step {killed_at}" in result.stderr + result.stdout
    assert summary["evaluations"][0]["step"] == killed_at + 20


def test_loss_falls_on_a_small_set(tmp_path):
    """Plain steps of the training module (no Ray): cross-entropy halves in 60 steps."""
    data = _shards(tmp_path / "data", 32, 32)
    texts, images = _texts_and_images(data)
    torch.manual_seed(0)
    parts = build_model(encoder="vit-line-tiny", decoder="trocr-char-tiny")
    pixels = parts.image_processor(images=images, return_tensors="pt").pixel_values
    labels = trim_labels(torch.from_numpy(encode_labels(texts, parts.tokenizer, 16).labels))
    module = OCRTrainingModule(parts.model, ctc_weight=0.5)
    losses = _cross_entropy_over_steps(module, pixels, labels, 60, 3e-3, objective="ce")
    assert losses[-1] < losses[0] / 2, losses[::10]


def _cross_entropy_over_steps(module, pixels, labels, steps: int, lr: float, objective: str):
    """AdamW steps on one batch, minimising cross-entropy alone (`ce`) or the module's
    whole loss (`total`); the cross-entropy before each step."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, ce, _ = module(pixels, labels)
        losses.append(float(ce.detach()))
        (loss if objective == "total" else ce).backward()
        optimizer.step()
        optimizer.zero_grad()
    return losses


def test_missing_text_column_is_named(tmp_path):
    data = _shards(tmp_path / "data", 8, 4)
    result = shardscribe(
        "train", "--input", str(data), "--output", str(tmp_path / "m"), *TINY,
        "--text-column", "caption", "--max-steps", "2",
    )  # fmt: skip
    assert result.returncode == 2
    assert "has no text column 'caption' (found: txt)" in result.stderr


def test_holding_out_every_shard_is_refused(tmp_path):
    data = _shards(tmp_path / "data", 8, 4)
    result = shardscribe(
        "train", "--input", str(data), "--output", str(tmp_path / "m"), *TINY,
        "--validation-shards", "2",
    )  # fmt: skip
    assert result.returncode == 2
    assert "has 2 shard(s); holding out 2 for validation leaves none" in result.stderr


def test_a_model_given_two_ways_is_refused(tmp_path):
    result = shardscribe(
        "train", "--input", "x", "--output", "y", "--model", "m", "--encoder", "vit-line-tiny"
    )
    assert result.returncode == 2
    assert "give name (a checkpoint) or encoder + decoder, not both" in result.stderr


def _warm_start(head_only: bool) -> OCRTrainingModule:
    """The bundled model warm-started with a new CTC head at weight 0.4."""
    torch.manual_seed(0)
    parts = build_model(
        encoder="vit-line-long", decoder="trocr-char-small", init_from="shardscribe/printed-lines"
    )
    module = OCRTrainingModule(parts.model, ctc_weight=0.4)
    module.head_only = head_only
    return module


def test_a_warm_start_with_a_new_ctc_head_does_not_raise_the_loss(tmp_path):
    """While the new head warms up alone, cross-entropy falls from the first step, and
    the model's gradients are exactly those of its cross-entropy: the random head's CTC
    loss (about 80 per line) cannot reach the encoder."""
    write_synth_shards(str(tmp_path), SynthSettings(lines=8, per_shard=8, seed=4, max_chars=30))
    texts, images = _texts_and_images(tmp_path)
    processor, tokenizer = load_processors_for(None, "vit-line-long", "trocr-char-small")
    pixels = processor(images=images, return_tensors="pt").pixel_values
    labels = trim_labels(torch.from_numpy(encode_labels(texts, tokenizer, 126).labels))

    # A learning rate of about step 20 of the warmup.
    losses = _cross_entropy_over_steps(
        _warm_start(head_only=True), pixels, labels, 10, 5e-5, objective="total"
    )
    assert max(losses[1:]) < losses[0] and losses[-1] < losses[0] / 2, losses

    def encoder_grads(module: OCRTrainingModule, objective: str) -> list[torch.Tensor]:
        loss, ce, _ = module(pixels, labels)
        (loss if objective == "total" else (1 - module.ctc_weight) * ce).backward()
        return [p.grad.clone() for p in module.model.encoder.parameters() if p.grad is not None]

    fresh = _warm_start(head_only=True)
    head = fresh.ctc_head.state_dict()
    warming = encoder_grads(fresh, "total")
    only_ce = encoder_grads(_warm_start(head_only=True), "ce")
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(warming, only_ce, strict=True))
    unwarmed = _warm_start(head_only=False)
    unwarmed.ctc_head.load_state_dict(head)
    mixed = encoder_grads(unwarmed, "total")
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(mixed, only_ce, strict=True))


def test_a_new_ctc_heads_gradients_do_not_shrink_the_models_step(tmp_path):
    """The model and the CTC head are clipped apart: the model's update is the same
    whether the head's gradients (hundreds of times larger when it is new) are there or
    not."""
    texts, images = _texts_and_images(_shards(tmp_path / "data", 8, 8))
    parts = build_model(encoder="vit-line-tiny", decoder="trocr-char-tiny")
    pixels = parts.image_processor(images=images, return_tensors="pt").pixel_values
    labels = trim_labels(torch.from_numpy(encode_labels(texts, parts.tokenizer, 16).labels))
    start = {k: v.clone() for k, v in parts.model.state_dict().items()}

    def model_update(drop_head_gradients: bool) -> list[torch.Tensor]:
        parts.model.load_state_dict(start)
        torch.manual_seed(0)
        module = OCRTrainingModule(parts.model, ctc_weight=0.5)
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        loss, _, ctc = module(pixels, labels)
        loss.backward()
        assert float(ctc) > 10  # a random head: its loss dwarfs the model's
        if drop_head_gradients:
            module.ctc_head.zero_grad()
        optimizer_step(
            module, optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=False), 1.0
        )
        return [p.detach() - start[name] for name, p in parts.model.named_parameters()]

    with_head, without_head = model_update(False), model_update(True)
    assert all(torch.allclose(a, b) for a, b in zip(with_head, without_head, strict=True))
    assert any(a.abs().sum() > 0 for a in with_head)
