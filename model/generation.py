"""Batched text generation over preprocessed pixels."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from model.loading import LoadedModel
from model.settings import GenerationSettings


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
        self.generate_kwargs = {
            "max_new_tokens": settings.max_new_tokens,
            "num_beams": settings.num_beams,
            "do_sample": settings.do_sample,
            # Hub TrOCR configs ship use_cache=False; the cache never changes outputs.
            "use_cache": True,
        }
        if settings.do_sample:
            self.generate_kwargs |= {
                "temperature": settings.temperature,
                "top_k": settings.top_k,
                "top_p": settings.top_p,
            }

    def generate(self, pixels: np.ndarray, seeds: Sequence[int] | None = None) -> list[str]:
        """Texts for a batch of pixel arrays (N, C, H, W); `seeds` is needed when sampling."""
        if len(pixels) == 0:
            return []
        tensor = torch.from_numpy(np.ascontiguousarray(pixels)).to(
            self.loaded.device, self.loaded.dtype
        )
        with torch.inference_mode():
            if not self.settings.do_sample:
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
