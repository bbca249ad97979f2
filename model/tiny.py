"""Tiny random `VisionEncoderDecoderModel`s built from configs, for tests and offline runs.

They follow the transformers docs: `VisionEncoderDecoderConfig.from_encoder_decoder_configs`
on a ViT encoder and a TrOCR or GPT-2 decoder, saved with `save_pretrained` together with
an image processor and a tokenizer, so `from_pretrained` loads them like any checkpoint.
"""

from __future__ import annotations

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
# Text lines: one encoder frame per 4-pixel column of a 32x128 image.
IMAGE_SIZE = (32, 128)
PATCH_SIZE = (32, 4)
WIDTH = 32


def _decoder_config(kind: TinyDecoder, vocab_size: int) -> TrOCRConfig | GPT2Config:
    ids = {"pad_token_id": PAD_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID}
    if kind == "trocr":
        return TrOCRConfig(
            vocab_size=vocab_size,
            d_model=WIDTH,
            decoder_layers=2,
            decoder_attention_heads=2,
            decoder_ffn_dim=2 * WIDTH,
            max_position_embeddings=256,
            init_std=0.5,
            decoder_start_token_id=EOS_ID,
            **ids,
        )
    return GPT2Config(
        vocab_size=vocab_size,
        n_embd=WIDTH,
        n_layer=2,
        n_head=2,
        n_positions=256,
        initializer_range=0.5,
        add_cross_attention=True,
        **ids,
    )


def build_tiny_model(path: str | Path, decoder: TinyDecoder = "trocr", seed: int = 0) -> Path:
    """Write a tiny random checkpoint (about 100 kB) with processor and tokenizer to `path`.

    Weights use a large init scale so that different images give different texts,
    which makes parity tests meaningful even though the text itself is noise.
    """
    path = Path(path)
    tokenizer = char_tokenizer()
    encoder = ViTConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * WIDTH,
        initializer_range=1.0,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, _decoder_config(decoder, len(tokenizer))
    )
    config.decoder_start_token_id = EOS_ID if decoder == "trocr" else BOS_ID
    config.pad_token_id = PAD_ID
    config.eos_token_id = EOS_ID
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config)
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": IMAGE_SIZE[0], "width": IMAGE_SIZE[1]}).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
