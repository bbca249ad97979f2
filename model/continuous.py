"""Continuous batching for `VisionEncoderDecoderModel` generation.

A running set of rows decodes one token per step. A row leaves as soon as its text ends
(end-of-sequence, or its token budget) and new images take its place: they are encoded
in one call and their first token is computed with their cross-attention keys and
values (the admission pass), then their cache joins the running set's. Every row a step
computes is a live one, where static `generate` keeps computing ended rows until the
batch's longest text ends.

Rows of the running set sit at different positions: the self-attention cache is padded
on the left per row (masked out), and each row's own position reaches the decoder's
position embedding (`RowPositions`). Texts equal `generate` for the same image: greedy
takes the same argmax, sampling draws from a generator seeded per row as `TextGenerator`
seeds the global one. `continuous_blocker` names what `generate` would do that is not
done here row by row (beam search, several sequences, logits processors that depend on
a row's history); for those the caller stays on static `generate`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from model.generate_settings import row_by_row_blocker
from model.generation import Prediction, TextGenerator
from model.line_frames import uses_text_frames
from model.positions import RowPositions
from model.scores import eos_token_ids
from model.shared_batches import Engine, StaticEngine

log = logging.getLogger(__name__)


def continuous_blocker(generator: TextGenerator) -> str | None:
    """Why these generation settings need static `generate`, or None."""
    if uses_text_frames(generator.loaded.model):
        return "a text-frame model (read by checked drafts or by generate per span)"
    blocker = row_by_row_blocker(generator.effective_settings)
    if blocker is not None:
        return blocker
    try:
        RowPositions(generator.loaded.model.decoder)
    except TypeError as error:
        return str(error)
    return None


@dataclass
class _Row:
    tag: Any
    tokens: list[int]  # the decoder's input so far: start, prompt, generated
    generator: torch.Generator | None  # sampling: this row's own random stream
    logprob: float = 0.0  # sum over generated tokens, for the score
    generated: int = 0


class ContinuousEngine:
    """The running set of one actor. `admit` and `step` are called by one thread at a
    time (`model.shared_batches.SharedBatches`); each returns the rows that ended, as
    (tag, Prediction)."""

    def __init__(self, generator: TextGenerator, batch_size: Callable[[], int]):
        if uses_text_frames(generator.loaded.model):
            raise ValueError("continuous batching does not read text frames: use static")
        self.generator = generator
        self.model = generator.loaded.model
        self.device = generator.loaded.device
        self._batch_size = batch_size
        self.positions = RowPositions(self.model.decoder)
        settings = generator.effective_settings
        self.start_ids = generator.start_ids
        self.max_new = generator.max_new_tokens
        self.eos = eos_token_ids(self.model)
        self.forced_eos = settings.get("forced_eos_token_id")
        self.samples = generator.samples
        self.warpers = LogitsProcessorList()
        if self.samples:  # in generate's order, with its neutral values left out
            if settings["temperature"] != 1.0:
                self.warpers.append(TemperatureLogitsWarper(settings["temperature"]))
            if settings["top_k"] != 0:
                self.warpers.append(TopKLogitsWarper(settings["top_k"]))
            if settings["top_p"] < 1.0:
                self.warpers.append(TopPLogitsWarper(settings["top_p"]))
        self.stats = generator.stats  # one account per actor, whichever engine runs
        self._clear()

    def _clear(self) -> None:
        self.rows: list[_Row] = []
        self.cache: EncoderDecoderCache | None = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)
        self.encoded: torch.Tensor | None = None  # the rows' encoder states

    @property
    def live(self) -> int:
        return len(self.rows)

    def room(self) -> int:
        """Rows to admit now: none while the set is nearly full, so that an admission
        (an encoder call) takes several images; all free slots when it is empty."""
        free = self._batch_size() - len(self.rows)
        return free if not self.rows or free > self._batch_size() // 16 else 0

    def drop(self) -> list[Any]:
        """After a failed call: forget every row, returning their tags."""
        tags = [row.tag for row in self.rows]
        self._clear()
        return tags

    @torch.inference_mode()
    def admit(self, pixels: np.ndarray, seeds: Sequence[int], tags: Sequence[Any]):
        started = time.perf_counter()
        tensor = self.generator.loaded.model_input(pixels)
        preprocessed = time.perf_counter()
        encoded = self._encode(tensor)
        encoded_at = time.perf_counter()
        count = len(tags)
        ids = torch.tensor([self.start_ids] * count, device=self.device)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        output = self.model.decoder(
            input_ids=ids, encoder_hidden_states=encoded, cache=cache, use_cache=True
        )
        rows = [
            _Row(tag, list(self.start_ids), self._random(seed))
            for tag, seed in zip(tags, seeds, strict=True)
        ]
        self.stats.add(
            encoder_calls=1,
            encoder_rows=count,
            decoder_rows=count,
            live_rows=count,
            admitted_rows=count,
        )
        self._advance(rows, output.logits[:, -1])
        self.stats.add(
            preprocess_s=preprocessed - started,
            encoder_s=encoded_at - preprocessed,
            decoder_s=time.perf_counter() - encoded_at,
        )
        mask = torch.ones((count, len(self.start_ids)), dtype=torch.long, device=self.device)
        self._join(rows, cache, mask, encoded)
        return self._leave()

    @torch.inference_mode()
    def step(self) -> list[tuple[Any, Prediction]]:
        started = time.perf_counter()
        count = len(self.rows)
        positions = self.mask.sum(dim=1)  # real tokens before this one: its position
        mask = torch.cat([self.mask, self.mask.new_ones((count, 1))], dim=1)
        last = torch.tensor([[row.tokens[-1]] for row in self.rows], device=self.device)
        with self.positions.at(positions) as position_kwargs:
            output = self.model.decoder(
                input_ids=last,
                attention_mask=mask,
                encoder_hidden_states=self.encoded,
                cache=self.cache,
                use_cache=True,
                **position_kwargs,
            )
        self.mask = mask
        self.stats.add(decoder_steps=1, decoder_rows=count, live_rows=count)
        self._advance(self.rows, output.logits[:, -1])
        self.stats.add(decoder_s=time.perf_counter() - started)
        return self._leave()

    def _encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The encoder states the decoder attends to, as `VisionEncoderDecoderModel`
        gives them (projected when the widths differ and the decoder does not)."""
        states = self.model.encoder(pixel_values=pixel_values).last_hidden_state
        encoder, decoder = self.model.encoder.config, self.model.decoder.config
        if (
            encoder.hidden_size != decoder.hidden_size
            and decoder.cross_attention_hidden_size is None
        ):
            states = self.model.enc_to_dec_proj(states)
        return states

    def _random(self, seed: int) -> torch.Generator | None:
        return torch.Generator(self.device).manual_seed(seed) if self.samples else None

    def _advance(self, rows: list[_Row], logits: torch.Tensor) -> None:
        """Each row's next token from its logits, as `generate` picks it."""
        scores = logits.to(dtype=torch.float32)
        if self.forced_eos is not None:  # generate's ForcedEOSTokenLogitsProcessor
            last_step = torch.tensor(
                [len(row.tokens) == len(self.start_ids) + self.max_new - 1 for row in rows],
                device=scores.device,
            )
            forced = torch.full_like(scores, -float("inf"))
            forced[:, self.forced_eos] = 0
            scores = torch.where(last_step[:, None], forced, scores)
        scores = self.warpers(None, scores)
        if self.samples:
            probs = nn.functional.softmax(scores, dim=-1)
            tokens = torch.cat(
                [
                    torch.multinomial(probs[i : i + 1], 1, generator=row.generator)[0]
                    for i, row in enumerate(rows)
                ]
            )
        else:
            tokens = scores.argmax(dim=-1)
        logprobs = None
        if self.generator.scores:
            chosen = nn.functional.log_softmax(scores, dim=-1).gather(1, tokens[:, None])
            logprobs = chosen[:, 0].tolist()
        for i, (row, token) in enumerate(zip(rows, tokens.tolist(), strict=True)):
            row.tokens.append(token)
            row.generated += 1
            if logprobs is not None:
                row.logprob += logprobs[i]

    def _ended(self, row: _Row) -> bool:
        return row.tokens[-1] in self.eos or row.generated >= self.max_new

    def _leave(self) -> list[tuple[Any, Prediction]]:
        """Take the rows that ended out of the set, and the cache columns no row uses."""
        ends = [self._ended(row) for row in self.rows]
        if not any(ends):
            return []
        ended = [row for row, end in zip(self.rows, ends, strict=True) if end]
        keep = [i for i, end in enumerate(ends) if not end]
        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self._clear()
        else:
            index = torch.tensor(keep, device=self.device)
            self.cache.batch_select_indices(index)
            self.mask, self.encoded = self.mask[index], self.encoded[index]
            first = int(self.mask.any(dim=0).int().argmax())
            if first:
                for layer in self.cache.self_attention_cache.layers:
                    layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
                self.mask = self.mask[:, first:]
        return [(row.tag, self._prediction(row)) for row in ended]

    def _prediction(self, row: _Row) -> Prediction:
        text = self.generator.decode(torch.tensor([row.tokens]))[0]
        if not self.generator.scores:
            return Prediction(text)
        return Prediction(text, row.logprob / max(row.generated, 1))

    def _join(self, rows: list[_Row], cache: EncoderDecoderCache, mask, encoded) -> None:
        """Rows whose first token is chosen join the running set, with their cache."""
        if self.cache is None:
            self.rows, self.cache, self.mask, self.encoded = rows, cache, mask, encoded
            return
        if encoded.shape[1:] != self.encoded.shape[1:]:
            raise ValueError("images of one run must encode to the same shape")
        width = max(self.mask.shape[1], mask.shape[1])
        for old, new in zip(
            self.cache.self_attention_cache.layers, cache.self_attention_cache.layers, strict=True
        ):
            old.keys = torch.cat([_pad_left(old.keys, width), _pad_left(new.keys, width)])
            old.values = torch.cat([_pad_left(old.values, width), _pad_left(new.values, width)])
        for old, new in zip(
            self.cache.cross_attention_cache.layers,
            cache.cross_attention_cache.layers,
            strict=True,
        ):
            old.keys = torch.cat([old.keys, new.keys])
            old.values = torch.cat([old.values, new.values])
        self.mask = torch.cat([_pad_left(self.mask, width), _pad_left(mask, width)])
        self.encoded = torch.cat([self.encoded, encoded])
        self.rows += rows


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Zeros before the sequence axis (the last but one of a cache, the last of a mask)."""
    axis = tensor.dim() - 2 if tensor.dim() == 4 else tensor.dim() - 1
    missing = width - tensor.shape[axis]
    if not missing:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=axis)


def engine_for(predictor: Any, batching: str, batch_size: Callable[[], int]) -> Engine:
    """The engine `compute.batching` asks for: continuous where the predictor generates
    with settings it can run row by row, else static (with a warning when it was asked
    for by name)."""
    if batching != "static" and isinstance(predictor, TextGenerator):
        blocker = continuous_blocker(predictor)
        if blocker is None:
            return ContinuousEngine(predictor, batch_size)
        if batching == "continuous":
            log.warning("continuous batching does not run %s: batching is static", blocker)
    return StaticEngine(predictor.predict, batch_size)
