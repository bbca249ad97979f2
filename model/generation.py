"""Batched text generation over preprocessed pixels."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np
import torch

from model.loading import LoadedModel
from model.settings import GenerationSettings

log = logging.getLogger(__name__)


def row_seed(job_seed: int, *parts: str) -> int:
    """A sampling seed derived from the job seed and the row's identity (shard, key)."""
    text = "\0".join([str(job_seed), *parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


class TextGenerator:
    """Turns pixel arrays into text with `model.generate`.

    Greedy and beam search run batched: each image's text equals what `generate`
    gives for that image alone. Sampling runs image by image, each with its own
    seed, so a text never depends on which batch the image landed in.
    """

    def __init__(self, loaded: LoadedModel, settings: GenerationSettings):
        self.loaded = loaded
        self.settings = settings
        tokenizer = loaded.tokenizer
        self.prompt_ids = (
            tokenizer(settings.prompt, add_special_tokens=False)["input_ids"]
            if settings.prompt
            else []
        )
        self.prompt_text = tokenizer.decode(self.prompt_ids, skip_special_tokens=True)
        config = loaded.model.generation_config
        # Hub TrOCR configs ship use_cache=False; the cache never changes outputs.
        self.generate_kwargs = settings.generate_overrides() | {"use_cache": True}
        self.samples = bool(self.generate_kwargs.get("do_sample", config.do_sample))
        unset = "max_new_tokens" not in self.generate_kwargs and config.max_new_tokens is None
        max_length = config.max_length or 20  # generate's own fallback
        if unset and max_length <= 20:
            log.warning(
                "max_new_tokens is unset and the model stops at max_length=%d tokens, "
                "which cuts long lines; set generation.max_new_tokens (--max-new-tokens)",
                max_length,
            )

    def generate(self, pixels: np.ndarray, seeds: Sequence[int] | None = None) -> list[str]:
        """Texts for a batch of pixel arrays (N, C, H, W); `seeds` is needed when sampling."""
        if len(pixels) == 0:
            return []
        tensor = torch.from_numpy(np.ascontiguousarray(pixels)).to(
            self.loaded.device, self.loaded.dtype
        )
        with torch.inference_mode():
            if not self.samples:
                return self._decode(self._generate(tensor))
            if seeds is None or len(seeds) != len(pixels):
                raise ValueError("sampling needs one seed per image")
            texts = []
            for row, seed in zip(tensor, seeds, strict=True):
                torch.manual_seed(seed)
                texts += self._decode(self._generate(row[None]))
            return texts

    def _generate(self, tensor: torch.Tensor) -> torch.Tensor:
        kwargs = dict(self.generate_kwargs)
        if self.prompt_ids:
            prompt = torch.tensor([self.prompt_ids], device=tensor.device)
            kwargs["decoder_input_ids"] = prompt.expand(len(tensor), -1)
        return self.loaded.model.generate(pixel_values=tensor, **kwargs)

    def _decode(self, sequences: torch.Tensor) -> list[str]:
        texts = self.loaded.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        if self.prompt_text:
            texts = [t.removeprefix(self.prompt_text) for t in texts]
        return texts
