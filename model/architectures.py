"""Built-in architectures, by name: ViT encoders and decoders over the character
tokenizer, sized for printed text lines on a CPU or after TrOCR-small and -base.

The one registry behind both the random checkpoints of `model.tiny` (tests,
benchmarks) and `shardscribe train`'s `model.encoder` / `model.decoder` names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from transformers import (
    BaseImageProcessor,
    DonutImageProcessor,
    GPT2Config,
    TrOCRConfig,
    ViTConfig,
    ViTImageProcessor,
)

from model.char_tokenizer import BOS_ID, EOS_ID, PAD_ID

DecoderKind = Literal["trocr", "gpt2"]


@dataclass(frozen=True)
class Encoder:
    """A ViT. Without a `patch_size` it cuts a text line into full-height columns, one
    frame per 4 pixels. `keep_aspect`: the image processor scales an image to the input
    height keeping its aspect ratio and pads it (one too long is scaled down to fit),
    instead of stretching every image to the input size."""

    width: int
    layers: int
    heads: int
    image_size: tuple[int, int]
    patch_size: tuple[int, int] | None = None
    keep_aspect: bool = False
    ffn_ratio: int = 4
    init_range: float = 0.02

    def config(self) -> ViTConfig:
        return ViTConfig(
            image_size=self.image_size,
            patch_size=self.patch_size or (self.image_size[0], 4),
            hidden_size=self.width,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.ffn_ratio * self.width,
            initializer_range=self.init_range,
        )

    def image_processor(self) -> BaseImageProcessor:
        height, width = self.image_size
        size, mean_std = (
            {"height": height, "width": width},
            {"image_mean": [0.5] * 3, "image_std": [0.5] * 3},
        )
        if self.keep_aspect:
            return DonutImageProcessor(
                size=size, do_thumbnail=True, do_pad=True, do_align_long_axis=False, **mean_std
            )
        return ViTImageProcessor(size=size, **mean_std)


@dataclass(frozen=True)
class Decoder:
    """A TrOCR or GPT-2 decoder; `vocab_size` None takes the tokenizer's."""

    width: int
    layers: int
    heads: int
    kind: DecoderKind = "trocr"
    vocab_size: int | None = None
    ffn_ratio: int = 4
    max_positions: int = 128
    init_std: float = 0.02

    def config(self, tokenizer_size: int) -> TrOCRConfig | GPT2Config:
        vocab_size = self.vocab_size or tokenizer_size
        ids = {"pad_token_id": PAD_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID}
        if self.kind == "trocr":
            return TrOCRConfig(
                vocab_size=vocab_size,
                d_model=self.width,
                decoder_layers=self.layers,
                decoder_attention_heads=self.heads,
                decoder_ffn_dim=self.ffn_ratio * self.width,
                max_position_embeddings=self.max_positions,
                init_std=self.init_std,
                **ids,
            )
        return GPT2Config(
            vocab_size=vocab_size,
            n_embd=self.width,
            n_layer=self.layers,
            n_head=self.heads,
            n_positions=self.max_positions,
            initializer_range=self.init_std,
            add_cross_attention=True,
            **ids,
        )


ENCODERS = {
    "vit-line-tiny": Encoder(width=32, layers=1, heads=2, image_size=(32, 128)),
    "vit-line-small": Encoder(width=192, layers=4, heads=4, image_size=(32, 320)),
    # Lines of 1 to 100+ characters at their own aspect ratio: 256 frames, about 2.5 to 3.5
    # per character of a 100-character line.
    "vit-line-long": Encoder(width=192, layers=4, heads=4, image_size=(32, 1024), keep_aspect=True),
    # Random test models: a large init, so that different images give different texts.
    "vit-line-test": Encoder(32, 2, 2, (32, 128), ffn_ratio=2, init_range=1.0),
    # The encoders of TrOCR-small (DeiT-small) and TrOCR-base (BEiT-base), as ViTs.
    "vit-384-small": Encoder(384, 12, 6, (384, 384), patch_size=(16, 16)),
    "vit-384-base": Encoder(768, 12, 12, (384, 384), patch_size=(16, 16)),
}
DECODERS = {
    "trocr-char-tiny": Decoder(width=32, layers=1, heads=2),
    "trocr-char-small": Decoder(width=192, layers=3, heads=4),
    "trocr-char-test": Decoder(32, 2, 2, ffn_ratio=2, max_positions=256, init_std=0.5),
    "gpt2-char-test": Decoder(32, 2, 2, "gpt2", ffn_ratio=2, max_positions=256, init_std=0.5),
    # TrOCR-small's and TrOCR-base's decoders (their vocabularies' sizes; ids beyond the
    # character tokenizer's decode to nothing).
    "trocr-small": Decoder(256, 6, 8, vocab_size=64044, max_positions=256, init_std=0.01),
    "trocr-base": Decoder(1024, 12, 16, vocab_size=50265, max_positions=256, init_std=0.01),
}
