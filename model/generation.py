"""Batched text generation over preprocessed pixels: `generate`, or for a text-frame model
(`model.line_frames`) its frames, read by checked drafts (`model.drafting`) when decoding
is plain greedy and by `generate` on each span length's rows otherwise."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from model.drafting import checked_drafts, ctc_drafts
from model.engine_stats import StatsCounter
from model.generate_settings import GENERATE_MAX_LENGTH, effective_settings, row_by_row_blocker
from model.line_frames import encode_lines, span_groups, uses_text_frames
from model.loading import LoadedModel
from model.scores import eos_token_ids, mean_token_logprobs
from model.settings import GenerationSettings

log = logging.getLogger(__name__)


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


def count_generate(
    counter: StatsCounter, sequences: torch.Tensor, start: int, eos: list[int], encoded=True
):
    """Counters of one `generate` call: every row computed at every step until the batch's
    longest text ended; a row is live up to and including its end-of-sequence token.
    `encoded`: the call ran the encoder (not given its states)."""
    generated = sequences[:, start:]
    rows, steps = generated.shape
    ended = torch.isin(generated, torch.tensor(eos, device=generated.device))
    live_steps = torch.where(ended.any(dim=1), ended.int().argmax(dim=1) + 1, steps)
    counter.add(
        decoder_steps=steps,
        decoder_rows=rows * steps,
        live_rows=int(live_steps.sum()),
        encoder_calls=int(encoded),
        encoder_rows=rows * encoded,
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
    become ranked candidates. A text-frame model reads each image's own frames; plain
    greedy decoding of one with a CTC head checks its drafts instead of generating
    token by token, with the same texts.
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
        self.text_frames = uses_text_frames(loaded.model)
        self.drafts = (
            self.text_frames
            and loaded.ctc_head is not None
            and not (self.samples or self.scores or self.prompt_ids)
            and row_by_row_blocker(self.effective_settings) is None
            and self.effective_settings.get("forced_eos_token_id") is None
        )
        unset = "max_new_tokens" not in self.generate_kwargs and config.max_new_tokens is None
        max_length = config.max_length or GENERATE_MAX_LENGTH
        if unset and max_length <= GENERATE_MAX_LENGTH:
            log.warning(
                "max_new_tokens is unset and the model stops at max_length=%d tokens, "
                "which cuts long lines; set generation.max_new_tokens (--max-new-tokens)",
                max_length,
            )

    @property
    def effective_settings(self) -> dict:
        """The settings `generate` runs with (the job's, the checkpoint's, its defaults)."""
        return effective_settings(self.loaded.model, self.generate_kwargs, self.samples)

    @property
    def max_new_tokens(self) -> int:
        settings = self.effective_settings
        return settings.get("max_new_tokens") or settings["max_length"] - len(self.start_ids)

    def generate(self, pixels: np.ndarray, seeds: Sequence[int] | None = None) -> list[str]:
        """Texts for a batch of pixel arrays (N, C, H, W); `seeds` is needed when sampling."""
        return [prediction.text for prediction in self.predict(pixels, seeds)]

    def predict(self, pixels: np.ndarray, seeds: Sequence[int] | None = None) -> list[Prediction]:
        """Predictions for a batch of pixel arrays (N, C, H, W); sampling needs `seeds`."""
        if len(pixels) == 0:
            return []
        if self.samples and (seeds is None or len(seeds) != len(pixels)):
            raise ValueError("sampling needs one seed per image")
        started = time.perf_counter()
        tensor = self.loaded.model_input(pixels)
        self.stats.add(preprocess_s=time.perf_counter() - started)
        with torch.inference_mode():
            if self.drafts:
                return self._drafted(tensor)
            predictions: list[Prediction | None] = [None] * len(pixels)
            for rows, inputs in self._model_inputs(tensor):
                if not self.samples:
                    done = self._predictions(self._generate(inputs, len(rows)))
                else:
                    done = []
                    for i, row in enumerate(rows):
                        torch.manual_seed(seeds[row])
                        done += self._predictions(self._generate(_row_of(inputs, i), 1))
                for row, prediction in zip(rows, done, strict=True):
                    predictions[row] = prediction
            return predictions

    def _model_inputs(self, tensor: torch.Tensor):
        """(rows, generate's inputs for them): every row's pixels at once, or for a
        text-frame model the encoder states of each span length's rows."""
        if not self.text_frames:
            yield list(range(len(tensor))), {"pixel_values": tensor}
            return
        started = time.perf_counter()
        encoded = encode_lines(self.loaded.model, tensor)
        self.stats.add(
            encoder_calls=1, encoder_rows=len(tensor), encoder_s=time.perf_counter() - started
        )
        for rows, states in span_groups(encoded):
            yield rows, {"encoder_outputs": BaseModelOutput(last_hidden_state=states)}

    def _drafted(self, tensor: torch.Tensor) -> list[Prediction]:
        model = self.loaded.model
        started = time.perf_counter()
        encoded = encode_lines(model, tensor)
        encoded_at = time.perf_counter()
        drafts = ctc_drafts(self.loaded.ctc_head, encoded, model.generation_config.pad_token_id)
        reading = checked_drafts(model, encoded, drafts, self.max_new_tokens)
        self.stats.add(
            decoder_steps=reading.passes,
            decoder_rows=reading.decoder_rows,
            live_rows=reading.decoder_rows,
            encoder_calls=1,
            encoder_rows=len(tensor),
            encoder_s=encoded_at - started,
            decoder_s=time.perf_counter() - encoded_at,
        )
        return [Prediction(text) for text in self.decode(reading.sequences)]

    def _generate(self, inputs: dict, rows: int):
        kwargs = dict(self.generate_kwargs)
        if self.prompt_ids:
            prompt = torch.tensor([self.prompt_ids], device=self.loaded.device)
            kwargs["decoder_input_ids"] = prompt.expand(rows, -1)
        started = time.perf_counter()
        output = self.loaded.model.generate(**inputs, **kwargs)
        self.stats.add(decoder_s=time.perf_counter() - started)
        sequences = output.sequences if self.scores else output
        count_generate(
            self.stats, sequences, len(self.start_ids), eos_token_ids(self.loaded.model),
            encoded="pixel_values" in inputs,
        )  # fmt: skip
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


def _row_of(inputs: dict, row: int) -> dict:
    """generate's inputs for one row of a batch's."""
    if "pixel_values" in inputs:
        return {"pixel_values": inputs["pixel_values"][row : row + 1]}
    states = inputs["encoder_outputs"].last_hidden_state[row : row + 1]
    return {"encoder_outputs": BaseModelOutput(last_hidden_state=states)}
