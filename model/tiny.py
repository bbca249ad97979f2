"""Random `VisionEncoderDecoderModel`s built from configs, for tests, benchmarks and
offline runs: `tiny` (about 100 kB, for tests), and `small` / `base`, whose dimensions
follow TrOCR-small and TrOCR-base so that a benchmark pays a realistic cost.

They follow the transformers docs: `VisionEncoderDecoderConfig.from_encoder_decoder_configs`
on a ViT encoder and a TrOCR or GPT-2 decoder, saved with `save_pretrained` together with
an image processor and a tokenizer, so `from_pretrained` loads them like any checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import (
    GPT2Config,
    TrOCRConfig,
    VisionEncoderDecoderConfig,
    VisionEncoderDecoderModel,
    ViTConfig,
    ViTImageProcessor,
)

from model.char_tokenizer import BOS_ID, EOS_ID, PAD_ID, char_tokenizer

TinyDecoder = Literal["trocr", "gpt2"]
ModelSize = Literal["tiny", "small", "base"]


@dataclass(frozen=True)
class Dimensions:
    image_size: tuple[int, int]
    patch_size: tuple[int, int]
    encoder_width: int
    encoder_layers: int
    encoder_heads: int
    decoder_width: int
    decoder_layers: int
    decoder_heads: int
    ffn_ratio: int  # feed-forward width / model width
    vocab_size: int | None  # None: the tokenizer's (ids it lacks decode to nothing)
    init_scale: float  # large for tiny, so different images give different texts


SIZES = {
    # Text lines: one encoder frame per 4-pixel column of a 32x128 image.
    "tiny": Dimensions((32, 128), (32, 4), 32, 2, 2, 32, 2, 2, 2, None, 1.0),
    # TrOCR-small: DeiT-small encoder, 6-layer decoder of width 256, 64044 tokens.
    "small": Dimensions((384, 384), (16, 16), 384, 12, 6, 256, 6, 8, 4, 64044, 0.02),
    # TrOCR-base: BEiT-base encoder, 12-layer decoder of width 1024, 50265 tokens.
    "base": Dimensions((384, 384), (16, 16), 768, 12, 12, 1024, 12, 16, 4, 50265, 0.02),
}


def _decoder_config(
    kind: TinyDecoder, dims: Dimensions, vocab_size: int
) -> TrOCRConfig | GPT2Config:
    ids = {"pad_token_id": PAD_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID}
    if kind == "trocr":
        return TrOCRConfig(
            vocab_size=vocab_size,
            d_model=dims.decoder_width,
            decoder_layers=dims.decoder_layers,
            decoder_attention_heads=dims.decoder_heads,
            decoder_ffn_dim=dims.ffn_ratio * dims.decoder_width,
            max_position_embeddings=256,
            init_std=dims.init_scale / 2,
            decoder_start_token_id=EOS_ID,
            **ids,
        )
    return GPT2Config(
        vocab_size=vocab_size,
        n_embd=dims.decoder_width,
        n_layer=dims.decoder_layers,
        n_head=dims.decoder_heads,
        n_positions=256,
        initializer_range=dims.init_scale / 2,
        add_cross_attention=True,
        **ids,
    )


def build_tiny_model(path: str | Path, decoder: TinyDecoder = "trocr", seed: int = 0) -> Path:
    """Write a tiny random checkpoint (about 100 kB) with processor and tokenizer to `path`.

    Weights use a large init scale so that different images give different texts,
    which makes parity tests meaningful even though the text itself is noise.
    """
    return build_random_model(path, "tiny", decoder, seed)


def build_random_model(
    path: str | Path, size: ModelSize, decoder: TinyDecoder = "trocr", seed: int = 0
) -> Path:
    """Write a random checkpoint of `size` with processor and tokenizer to `path`."""
    dims = SIZES[size]
    path = Path(path)
    tokenizer = char_tokenizer()
    encoder = ViTConfig(
        image_size=dims.image_size,
        patch_size=dims.patch_size,
        hidden_size=dims.encoder_width,
        num_hidden_layers=dims.encoder_layers,
        num_attention_heads=dims.encoder_heads,
        intermediate_size=dims.ffn_ratio * dims.encoder_width,
        initializer_range=dims.init_scale,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, _decoder_config(decoder, dims, dims.vocab_size or len(tokenizer))
    )
    config.decoder_start_token_id = EOS_ID if decoder == "trocr" else BOS_ID
    config.pad_token_id = PAD_ID
    config.eos_token_id = EOS_ID
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config)
    model.save_pretrained(path)
    height, width = dims.image_size
    ViTImageProcessor(size={"height": height, "width": width}).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
