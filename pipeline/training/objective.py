"""What one training step of a `VisionEncoderDecoderModel` needs, without Ray: labels
from texts, the loss (cross-entropy, plus an optional CTC loss on the encoder frames),
recognition for evaluation, and the training state a checkpoint holds.

The CTC head exists only in training. A small ViT + decoder trained from scratch
otherwise learns a language model and ignores the image (measured: loss stuck near
3 per token); CTC makes every encoder frame answer for the characters under it,
which breaks that plateau. The saved model stays a plain VisionEncoderDecoderModel.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase, VisionEncoderDecoderModel

IGNORE_INDEX = -100  # label positions the loss skips (the padding)
STATE_FILE = "training_state.pt"


@dataclass(frozen=True)
class EncodedLabels:
    labels: np.ndarray  # (N, max_tokens) int64, text ids then eos, padded with -100
    too_long: np.ndarray  # (N,) bool: the text did not fit; the row should be skipped


def encode_labels(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_tokens: int
) -> EncodedLabels:
    """Token ids of each text followed by eos (the decoder learns where to stop)."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    labels = np.full((len(ids), max_tokens), IGNORE_INDEX, dtype=np.int64)
    too_long = np.zeros(len(ids), dtype=bool)
    for row, tokens in enumerate(ids):
        tokens = [*tokens, tokenizer.eos_token_id]
        too_long[row] = len(tokens) > max_tokens
        labels[row, : min(len(tokens), max_tokens)] = tokens[:max_tokens]
    return EncodedLabels(labels, too_long)


def trim_labels(labels: torch.Tensor) -> torch.Tensor:
    """Drop the padding columns every row of the batch has."""
    longest = int((labels != IGNORE_INDEX).sum(dim=1).max())
    return labels[:, : max(longest, 1)]


class OCRTrainingModule(torch.nn.Module):
    """The model plus, when `ctc_weight` > 0, a linear CTC head over the encoder frames.
    forward() returns (loss, cross-entropy, ctc) so one DDP wrapper covers both.

    `head_only`: the CTC loss reaches the head but not the encoder, so a new head can
    learn on a trained model without its gradients undoing what the model knows."""

    def __init__(self, model: VisionEncoderDecoderModel, ctc_weight: float = 0.0):
        super().__init__()
        self.model = model
        self.ctc_weight = ctc_weight
        self.head_only = False
        self.ctc_head = (
            torch.nn.Linear(model.encoder.config.hidden_size, model.decoder.config.vocab_size)
            if ctc_weight > 0
            else None
        )

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor):
        output = self.model(pixel_values=pixel_values, labels=labels)
        if self.ctc_head is None:
            return output.loss, output.loss, torch.zeros_like(output.loss)
        frames = output.encoder_last_hidden_state
        ctc = self._ctc_loss(frames.detach() if self.head_only else frames, labels)
        loss = (1 - self.ctc_weight) * output.loss + self.ctc_weight * ctc
        return loss, output.loss, ctc

    def _ctc_loss(self, frames: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        config = self.model.config
        blank = config.pad_token_id  # never a target: padding is -100 in labels
        log_probs = self.ctc_head(frames).float().log_softmax(-1).transpose(0, 1)  # (T, N, V)
        keep = (labels != IGNORE_INDEX) & (labels != config.eos_token_id) & (labels != blank)
        return F.ctc_loss(
            log_probs,
            labels[keep],
            input_lengths=torch.full((labels.shape[0],), log_probs.shape[0], dtype=torch.long),
            target_lengths=keep.sum(dim=1),
            blank=blank,
            zero_infinity=True,  # a line longer than the frames is skipped, not NaN
        )


def ctc_head_warmup_end(ctc_weight: float, warmup_steps: int, warm_start: bool) -> int:
    """The step until which only the CTC head learns from the CTC loss: a warm start's
    head is new, a model trained from scratch learns with its head from the first step.
    (A run resumed past this step has a warm head in its checkpoint.)"""
    return warmup_steps if ctc_weight and warm_start else 0


def mixed_precision(setting: str, device: torch.device):
    if device.type != "cuda" or setting == "no":
        return nullcontext(), None
    if setting == "auto":
        setting = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if setting == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype), dtype


def optimizer_step(module, optimizer, scheduler, scaler, grad_clip: float) -> None:
    """One optimizer step from the accumulated gradients: unscale (fp16), clip, step.
    The model and the CTC head are clipped apart: a new head's gradients are hundreds of
    times the model's, and one shared clip would shrink the model's steps while they
    last, then let them grow past the learning rate as the head learns (Adam's second
    moments remember the shrunken ones; measured: cross-entropy 0.47 -> 0.93 in 175 steps
    of a warm start whose head was warming up alone)."""
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(module.model.parameters(), grad_clip)
    if module.ctc_head is not None:
        torch.nn.utils.clip_grad_norm_(module.ctc_head.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()


@torch.inference_mode()
def recognise(
    model: VisionEncoderDecoderModel,
    tokenizer: PreTrainedTokenizerBase,
    pixel_values: torch.Tensor,
    max_new_tokens: int,
    num_beams: int = 1,
) -> list[str]:
    ids = model.generate(pixel_values, max_new_tokens=max_new_tokens, num_beams=num_beams)
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


def save_state(directory: Path, module: OCRTrainingModule, optimizer, scheduler, step: int):
    """Everything needed to go on from `step`: weights (CTC head included), optimizer,
    schedule."""
    torch.save(
        {
            "step": step,
            "module": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        },
        directory / STATE_FILE,
    )


def load_state(directory: Path, module: OCRTrainingModule, optimizer, scheduler) -> int:
    """Restore what `save_state` wrote; the step to go on from."""
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    module.load_state_dict(state["module"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])
