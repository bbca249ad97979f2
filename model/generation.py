"""Batched text generation over preprocessed pixels."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model.engine_stats import StatsCounter
from model.loading import LoadedModel
from model.scores import eos_token_ids, mean_token_logprobs
from model.settings import GenerationSettings

log = logging.getLogger(__name__)
GENERATE_MAX_LENGTH = 20  # what generate stops at when nothing sets a length


def prompt_token_ids(tokenizer, prompt: str | None) -> list[int]:
    """The decoder prompt's tokens, which the text starts from (none without a prompt)."""
    return tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []


def decoder_start_ids(model, prompt_ids: list[int]) -> list[int]:
    """The decoder's first input, as `generate` builds it: the start token, then the
    prompt; a prompt that begins with the start token, or any prompt of a Donut model
    (whose task token is its start), is taken as it is."""
    start = model.generation_config.decoder_start_token_id
    if start is None:
        start = model.config.decoder_start_token_id
    donut = "donut" in model.config.encoder.model_type.lower()
    if prompt_ids and (donut or prompt_ids[0] == start):
        return list(prompt_ids)
    return [start, *prompt_ids]


def count_generate(counter: StatsCounter, sequences: torch.Tensor, start: int, eos: list[int]):
    """Counters of one `generate` call: every row computed at every step until the batch's
    longest text ended; a row is live up to and including its end-of-sequence token."""
    generated = sequences[:, start:]
    rows, steps = generated.shape
    ended = torch.isin(generated, torch.tensor(eos, device=generated.device))
    live_steps = torch.where(ended.any(dim=1), ended.int().argmax(dim=1) + 1, steps)
    counter.add(
        decoder_steps=steps,
        decoder_rows=rows * steps,
        live_rows=int(live_steps.sum()),
        encoder_calls=1,
        encoder_rows=rows,
    )


@dataclass(frozen=True)
class Prediction:
    """One image's result: its text, and for labeling how sure the model is of it."""

    text: str
    score: float | None = None  # mean per-token log-probability of the text
    candidates: list[dict] | None = None  # [{"text", "score"}], best first
    label_prob: float | None = None  # choices mode: the text's probability among the choices
    choices: list[dict] | None = None  # choices mode: [{"label", "prob"}], in the given order


class TextGenerator:
    """Turns pixel arrays into text with `model.generate`.

    Greedy and beam search run batched: each image's text equals what `generate`
    gives for that image alone. Sampling runs image by image, each with its own
    seed, so a text never depends on which batch the image landed in. With `score`,
    each text gets its mean per-token log-probability, and several returned sequences
    become ranked candidates.
    """

    def __init__(self, loaded: LoadedModel, settings: GenerationSettings, score: bool = False):
        self.loaded = loaded
        self.settings = settings
        tokenizer = loaded.tokenizer
        self.prompt_ids = prompt_token_ids(tokenizer, settings.prompt)
        self.prompt_text = tokenizer.decode(self.prompt_ids, skip_special_tokens=True)
        self.start_ids = decoder_start_ids(loaded.model, self.prompt_ids)
        config = loaded.model.generation_config
        # Hub TrOCR configs ship use_cache=False; the cache never changes outputs.
        self.generate_kwargs = settings.generate_overrides() | {"use_cache": True}
        self.samples = bool(self.generate_kwargs.get("do_sample", config.do_sample))
        self.returns = settings.num_return_sequences or 1
        self.scores = score or self.returns > 1
        if self.scores:
            self.generate_kwargs |= {"output_scores": True, "return_dict_in_generate": True}
        self.stats = StatsCounter()
        unset = "max_new_tokens" not in self.generate_kwargs and config.max_new_tokens is None
        max_length = config.max_length or GENERATE_MAX_LENGTH
        if unset and max_length <= GENERATE_MAX_LENGTH:
            log.warning(
                "max_new_tokens is unset and the model stops at max_length=%d tokens, "
                "which cuts long lines; set generation.max_new_tokens (--max-new-tokens)",
                max_length,
            )

    def generate(self, pixels: np.ndarray, seeds: Sequence[int] | None = None) -> list[str]:
        """Texts for a batch of pixel arrays (N, C, H, W); `seeds` is needed when sampling."""
        return [prediction.text for prediction in self.predict(pixels, seeds)]

    def predict(self, pixels: np.ndarray, seeds: Sequence[int] | None = None) -> list[Prediction]:
        """Predictions for a batch of pixel arrays (N, C, H, W); sampling needs `seeds`."""
        if len(pixels) == 0:
            return []
        tensor = self.loaded.model_input(pixels)
        with torch.inference_mode():
            if not self.samples:
                return self._predictions(self._generate(tensor))
            if seeds is None or len(seeds) != len(pixels):
                raise ValueError("sampling needs one seed per image")
            predictions = []
            for row, seed in zip(tensor, seeds, strict=True):
                torch.manual_seed(seed)
                predictions += self._predictions(self._generate(row[None]))
            return predictions

    def _generate(self, tensor: torch.Tensor) -> torch.Tensor:
        kwargs = dict(self.generate_kwargs)
        if self.prompt_ids:
            prompt = torch.tensor([self.prompt_ids], device=tensor.device)
            kwargs["decoder_input_ids"] = prompt.expand(len(tensor), -1)
        output = self.loaded.model.generate(pixel_values=tensor, **kwargs)
        sequences = output.sequences if self.scores else output
        count_generate(self.stats, sequences, len(self.start_ids), eos_token_ids(self.loaded.model))
        return output

    def _predictions(self, output) -> list[Prediction]:
        if not self.scores:
            return [Prediction(text) for text in self.decode(output)]
        texts = self.decode(output.sequences)
        scores = mean_token_logprobs(self.loaded.model, output).tolist()
        predictions = []
        for start in range(0, len(texts), self.returns):
            ranked = list(zip(texts[start : start + self.returns], scores[start:], strict=False))
            if self.samples:  # beam search returns its best first; samples come unordered
                ranked.sort(key=lambda candidate: -candidate[1])
            candidates = [{"text": text, "score": score} for text, score in ranked]
            best = candidates[0]
            predictions.append(
                Prediction(best["text"], best["score"], candidates if self.returns > 1 else None)
            )
        return predictions

    def decode(self, sequences: torch.Tensor) -> list[str]:
        """Texts of generated sequences (prompt and special tokens left out)."""
        texts = self.loaded.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        if self.prompt_text:
            texts = [t.removeprefix(self.prompt_text) for t in texts]
        return texts
