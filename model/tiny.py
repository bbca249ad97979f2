"""Random `VisionEncoderDecoderModel`s built from configs, for tests, benchmarks and
offline runs: `tiny` (about 100 kB, for tests), and `small` / `base`, whose dimensions
follow TrOCR-small and TrOCR-base so that a benchmark pays a realistic cost.

They follow the transformers docs: `VisionEncoderDecoderConfig.from_encoder_decoder_configs`
on a built-in encoder and decoder (`model.architectures`), saved with `save_pretrained`
together with an image processor and a tokenizer, so `from_pretrained` loads them like
any checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from transformers import VisionEncoderDecoderConfig, VisionEncoderDecoderModel

from model.architectures import DECODERS, ENCODERS, DecoderKind
from model.char_tokenizer import BOS_ID, EOS_ID, PAD_ID, char_tokenizer

ModelSize = Literal["tiny", "small", "base"]
# size -> encoder, and decoder by kind
SIZES: dict[str, tuple[str, dict[DecoderKind, str]]] = {
    "tiny": ("vit-line-test", {"trocr": "trocr-char-test", "gpt2": "gpt2-char-test"}),
    "small": ("vit-384-small", {"trocr": "trocr-small"}),
    "base": ("vit-384-base", {"trocr": "trocr-base"}),
}


def build_tiny_model(path: str | Path, decoder: DecoderKind = "trocr", seed: int = 0) -> Path:
    """Write a tiny random checkpoint (about 100 kB) with processor and tokenizer to `path`.

    Weights use a large init scale so that different images give different texts,
    which makes parity tests meaningful even though the text itself is noise.
    """
    return build_random_model(path, "tiny", decoder, seed)


def build_random_model(
    path: str | Path, size: ModelSize, decoder: DecoderKind = "trocr", seed: int = 0
) -> Path:
    """Write a random checkpoint of `size` with processor and tokenizer to `path`."""
    encoder_name, decoders = SIZES[size]
    encoder = ENCODERS[encoder_name]
    path = Path(path)
    tokenizer = char_tokenizer()
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder.config(), DECODERS[decoders[decoder]].config(len(tokenizer))
    )
    config.decoder_start_token_id = EOS_ID if decoder == "trocr" else BOS_ID
    config.pad_token_id = PAD_ID
    config.eos_token_id = EOS_ID
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config)
    model.save_pretrained(path)
    encoder.image_processor().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
