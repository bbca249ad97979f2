"""What one training step of a `VisionEncoderDecoderModel` needs, without Ray: labels
from texts, the loss (cross-entropy, plus an optional CTC loss on the encoder frames),
recognition for evaluation, and the training state a checkpoint holds.

A small ViT + decoder trained from scratch otherwise learns a language model and
ignores the image (measured: loss stuck near 3 per token); CTC makes every encoder
frame answer for the characters under it, which breaks that plateau. The head is saved
beside the model (`model.drafting`): its reading is the draft that decoding checks.
A model with text frames (`model.line_frames`) trains on them, as it will read.
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
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.vision_encoder_decoder.modeling_vision_encoder_decoder import (
    shift_tokens_right,
)

from model.drafting import checked_drafts, ctc_drafts, ctc_log_probs
from model.line_frames import (
    EncodedLines,
    decoder_logits,
    encode_lines,
    span_groups,
    uses_text_frames,
)

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

    def __init__(
        self,
        model: VisionEncoderDecoderModel,
        ctc_weight: float = 0.0,
        ctc_head: torch.nn.Linear | None = None,
    ):
        super().__init__()
        self.model = model
        self.ctc_weight = ctc_weight
        self.head_only = False
        if ctc_weight > 0 and ctc_head is None:
            encoder, decoder = model.encoder.config, model.decoder.config
            ctc_head = torch.nn.Linear(encoder.hidden_size, decoder.vocab_size)
        self.ctc_head = ctc_head.float().train() if ctc_weight > 0 else None

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor):
        if uses_text_frames(self.model):
            encoded = encode_lines(self.model, pixel_values)
            config = self.model.config
            inputs = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
            logits = decoder_logits(self.model, inputs, encoded)
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
        else:
            output = self.model(pixel_values=pixel_values, labels=labels)
            ce = output.loss
            encoded = EncodedLines(
                output.encoder_last_hidden_state,
                torch.ones(output.encoder_last_hidden_state.shape[:2], dtype=torch.long),
            )
        if self.ctc_head is None:
            return ce, ce, torch.zeros_like(ce)
        frames = encoded.states.detach() if self.head_only else encoded.states
        ctc = self._ctc_loss(EncodedLines(frames, encoded.mask), labels)
        return (1 - self.ctc_weight) * ce + self.ctc_weight * ctc, ce, ctc

    def _ctc_loss(self, encoded: EncodedLines, labels: torch.Tensor) -> torch.Tensor:
        config = self.model.config
        blank = config.pad_token_id  # never a target: padding is -100 in labels
        log_probs = ctc_log_probs(self.ctc_head, encoded.states).transpose(0, 1)  # (T, N, V)
        keep = (labels != IGNORE_INDEX) & (labels != config.eos_token_id) & (labels != blank)
        return F.ctc_loss(
            log_probs,
            labels[keep],
            input_lengths=encoded.mask.sum(dim=1).cpu(),
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
    ctc_head: torch.nn.Linear | None = None,
) -> list[str]:
    """Texts as `run` reads them: a text-frame model's from its frames, drafted by its CTC
    head and checked where decoding is greedy."""
    if not uses_text_frames(model):
        ids = model.generate(pixel_values, max_new_tokens=max_new_tokens, num_beams=num_beams)
        return tokenizer.batch_decode(ids, skip_special_tokens=True)
    encoded = encode_lines(model, pixel_values)
    if ctc_head is not None and num_beams == 1:
        drafts = ctc_drafts(ctc_head, encoded, blank=model.generation_config.pad_token_id)
        ids = checked_drafts(model, encoded, drafts, max_new_tokens).sequences
        return tokenizer.batch_decode(ids, skip_special_tokens=True)
    texts = [""] * len(pixel_values)
    for rows, states in span_groups(encoded):
        ids = model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=states),
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
        )
        decoded = tokenizer.batch_decode(ids, skip_special_tokens=True)
        for row, text in zip(rows, decoded, strict=True):
            texts[row] = text
    return texts


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
