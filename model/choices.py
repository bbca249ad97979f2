"""Choices mode: which of the given labels fits each image, by teacher forcing.

Each label's log-likelihood is the sum of its tokens' log-probabilities, end-of-sequence
included (so "cat" does not win over "cats" just by being a prefix of it). The encoder
runs once per batch; each chunk of labels is one decoder forward pass over every
(image, label) pair. No text is generated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from model.generation import Prediction, prompt_token_ids
from model.line_frames import decoder_states, encode_lines, uses_text_frames
from model.loading import LoadedModel, ModelLoadError
from model.scores import eos_token_ids

# Decoder positions per forward pass: bounds the logits tensor (positions x vocabulary).
POSITIONS_PER_PASS = 4096


class ChoiceScorer:
    def __init__(self, loaded: LoadedModel, labels: Sequence[str], prompt: str | None = None):
        model, tokenizer = loaded.model, loaded.tokenizer
        prompt_ids = prompt_token_ids(tokenizer, prompt)
        start = model.generation_config.decoder_start_token_id
        if start is None:
            start = model.config.decoder_start_token_id
        eos = eos_token_ids(model)
        if start is None or not eos:
            raise ModelLoadError(
                "choices mode needs the model's decoder_start_token_id and eos_token_id"
            )
        self.loaded = loaded
        self.labels = list(labels)
        self.prompt_len = len(prompt_ids)
        # Each sequence: start, prompt, label tokens, eos. Inputs drop the last token,
        # targets drop the first; only the label and eos targets are scored.
        self.sequences = [
            [start, *prompt_ids, *tokenizer(label, add_special_tokens=False).input_ids, eos[0]]
            for label in self.labels
        ]
        self.pad_id = model.config.decoder.pad_token_id or 0

    def predict(self, pixels: np.ndarray, seeds: Sequence[int] | None = None) -> list[Prediction]:
        """Predictions for a batch of pixel arrays (N, C, H, W); `seeds` are not used."""
        if len(pixels) == 0:
            return []
        model = self.loaded.model
        tensor = self.loaded.model_input(pixels)
        with torch.inference_mode():
            if uses_text_frames(model):
                encoded = encode_lines(model, tensor)
                hidden, frames = encoded.states, encoded.mask
            else:
                hidden, frames = model.get_encoder()(pixel_values=tensor).last_hidden_state, None
            totals, lengths = [], []
            for chunk in self._chunks(len(tensor)):
                total, length = self._loglikelihoods(hidden, frames, chunk)
                totals.append(total)
                lengths.append(length)
        total = torch.cat(totals, dim=1)  # (images, labels)
        probs = torch.softmax(total, dim=1)
        means = total / torch.cat(lengths)[None]
        best = probs.argmax(dim=1).tolist()
        return [
            Prediction(
                text=self.labels[b],
                score=means[i, b].item(),
                label_prob=probs[i, b].item(),
                choices=[
                    {"label": label, "prob": p}
                    for label, p in zip(self.labels, probs[i].tolist(), strict=True)
                ],
            )
            for i, b in enumerate(best)
        ]

    def _chunks(self, images: int) -> list[list[list[int]]]:
        longest = max(map(len, self.sequences))
        per_pass = max(1, POSITIONS_PER_PASS // (images * longest))
        return [self.sequences[i : i + per_pass] for i in range(0, len(self.sequences), per_pass)]

    def _loglikelihoods(
        self, hidden: torch.Tensor, frames: torch.Tensor | None, sequences: list[list[int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) summed log-probabilities of each label, and each label's scored
        token count, from one decoder pass over every (image, label) pair. `frames`: a
        text-frame model's mask over `hidden`."""
        device = hidden.device
        width = max(map(len, sequences)) - 1
        inputs = torch.full((len(sequences), width), self.pad_id, device=device)
        targets = torch.full_like(inputs, self.pad_id)
        attention = torch.zeros_like(inputs)
        scored = torch.zeros_like(inputs, dtype=torch.bool)
        for row, sequence in enumerate(sequences):
            n = len(sequence) - 1
            inputs[row, :n] = torch.tensor(sequence[:-1])
            targets[row, :n] = torch.tensor(sequence[1:])
            attention[row, :n] = 1
            scored[row, self.prompt_len : n] = True
        images, labels = len(hidden), len(sequences)
        # Row order: image-major, so row i * labels + j is image i with label j.
        model, states = self.loaded.model, hidden.repeat_interleave(labels, 0)
        if frames is None:
            logits = model(
                encoder_outputs=BaseModelOutput(last_hidden_state=states),
                decoder_input_ids=inputs.repeat(images, 1),
                decoder_attention_mask=attention.repeat(images, 1),
            ).logits
        else:
            logits = model.decoder(
                input_ids=inputs.repeat(images, 1),
                attention_mask=attention.repeat(images, 1),
                encoder_hidden_states=decoder_states(model, states),
                encoder_attention_mask=frames.repeat_interleave(labels, 0),
            ).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        picked = logprobs.gather(-1, targets.repeat(images, 1)[..., None]).squeeze(-1)
        picked = torch.where(scored.repeat(images, 1), picked, 0.0)
        return picked.sum(dim=1).view(images, labels), scored.sum(dim=1).float()
