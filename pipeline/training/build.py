"""Build a `VisionEncoderDecoderModel` to train: a checkpoint to fine-tune, or an encoder
and a decoder paired with `from_encoder_decoder_pretrained`, each a checkpoint or a
built-in config (random init, sized for printed text lines on a CPU).

Built-in parts are first saved as ordinary checkpoints, so every pairing takes the
same documented path; the special token ids are then set from the tokenizer, and a
pairing that cannot work (no start or pad token) fails with what to do.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    TrOCRForCausalLM,
    VisionEncoderDecoderModel,
    ViTModel,
)

from model.architectures import DECODERS, ENCODERS
from model.bundled import resolve_model_name
from model.char_tokenizer import char_tokenizer
from model.drafting import load_ctc_head
from model.line_frames import column_patches, enable_text_frames, processor_pad_value
from model.loading import ModelLoadError

log = logging.getLogger(__name__)


def _save_builtin_encoder(name: str, directory: Path) -> str:
    ViTModel(ENCODERS[name].config()).save_pretrained(directory)
    return str(directory)


def _save_builtin_decoder(name: str, directory: Path) -> str:
    TrOCRForCausalLM(DECODERS[name].config(len(char_tokenizer()))).save_pretrained(directory)
    return str(directory)


def _load(what: str, name: str, loader: Any) -> Any:
    try:
        return loader.from_pretrained(name)
    except Exception as error:  # transformers raises OSError, ValueError or KeyError here
        raise ModelLoadError(
            f"cannot load the {what} of {name!r}: {error}. Built-in encoders: "
            f"{', '.join(ENCODERS)}; built-in decoders: {', '.join(DECODERS)}; "
            "else give a local checkpoint or a hub id available offline."
        ) from error


def _first_set(*ids: int | None) -> int | None:
    return next((i for i in ids if i is not None), None)


def set_special_tokens(model: VisionEncoderDecoderModel, tokenizer: PreTrainedTokenizerBase):
    """decoder_start, pad and eos ids from the tokenizer; the decoder's vocabulary grown to
    the tokenizer's when it is smaller. Ids already in the config are kept."""
    config = model.config
    start = _first_set(
        getattr(config, "decoder_start_token_id", None),
        tokenizer.bos_token_id,
        tokenizer.cls_token_id,
        tokenizer.eos_token_id,
    )
    pad = _first_set(
        getattr(config, "pad_token_id", None), tokenizer.pad_token_id, tokenizer.eos_token_id
    )
    eos = _first_set(getattr(config, "eos_token_id", None), tokenizer.eos_token_id)
    for field, value in (("decoder_start_token_id", start), ("pad_token_id", pad)):
        if value is None:
            raise ModelLoadError(
                f"cannot set {field}: the tokenizer has no bos, cls, pad or eos token; "
                "use a decoder checkpoint whose tokenizer defines them"
            )
    if eos is None:
        raise ModelLoadError("cannot set eos_token_id: the tokenizer has no eos token")
    if len(tokenizer) > model.decoder.config.vocab_size:
        log.info("growing the decoder vocabulary to the tokenizer's %d tokens", len(tokenizer))
        model.decoder.resize_token_embeddings(len(tokenizer))
    for target in (config, model.generation_config):
        target.decoder_start_token_id, target.pad_token_id, target.eos_token_id = start, pad, eos
    config.vocab_size = model.decoder.config.vocab_size


@dataclass
class TrainableModel:
    model: VisionEncoderDecoderModel
    image_processor: Any
    tokenizer: PreTrainedTokenizerBase
    ctc_head: torch.nn.Linear | None = None  # the warm start's, where it has one


def load_processors_for(
    checkpoint: str | None, encoder: str | None, decoder: str | None
) -> tuple[Any, PreTrainedTokenizerBase]:
    """The image processor (encoder side) and tokenizer (decoder side) `build_model` uses,
    without building the model: what data preparation needs."""
    if checkpoint:
        checkpoint = resolve_model_name(checkpoint)
        return (
            _load("image processor", checkpoint, AutoImageProcessor),
            _load("tokenizer", checkpoint, AutoTokenizer),
        )
    if not (encoder and decoder):
        raise ModelLoadError("give model.name (a checkpoint) or both encoder and decoder")
    processor = (
        ENCODERS[encoder].image_processor()
        if encoder in ENCODERS
        else _load("image processor", encoder, AutoImageProcessor)
    )
    tokenizer = (
        char_tokenizer() if decoder in DECODERS else _load("tokenizer", decoder, AutoTokenizer)
    )
    return processor, tokenizer


def build_model(
    checkpoint: str | None = None,
    encoder: str | None = None,
    decoder: str | None = None,
    init_from: str | None = None,
) -> TrainableModel:
    """A checkpoint to fine-tune, or `encoder` + `decoder` paired (built-in names or
    checkpoints), its weights taken from `init_from` where they fit. Processor from the
    encoder side, tokenizer from the decoder side."""
    image_processor, tokenizer = load_processors_for(checkpoint, encoder, decoder)
    if checkpoint:
        model = _load("model", resolve_model_name(checkpoint), VisionEncoderDecoderModel)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            if encoder in ENCODERS:
                encoder = _save_builtin_encoder(encoder, Path(scratch) / "encoder")
            if decoder in DECODERS:
                decoder = _save_builtin_decoder(decoder, Path(scratch) / "decoder")
            model = _pair(encoder, decoder)
    set_special_tokens(model, tokenizer)
    if init_from:
        copied = copy_weights(model, init_from)
        log.info("initialised %d of %d tensors from %s", copied, len(model.state_dict()), init_from)
    if column_patches(model):  # read as it will be read: text frames, a draft to check
        enable_text_frames(model, processor_pad_value(image_processor))
    source = init_from or checkpoint
    head = load_ctc_head(resolve_model_name(source), model) if source else None
    if head is not None and head.out_features != model.decoder.config.vocab_size:
        head = None  # another vocabulary: the head starts anew
    return TrainableModel(model, image_processor, tokenizer, head)


@torch.no_grad()
def copy_weights(model: VisionEncoderDecoderModel, checkpoint: str) -> int:
    """Warm start from a checkpoint of another geometry or vocabulary: tensors of the same
    name and shape are copied, a ViT position table of another length is interpolated
    (its class token kept), a table with fewer rows (a smaller vocabulary, fewer
    positions) fills the first rows. Returns how many tensors were taken."""
    source = _load("model", resolve_model_name(checkpoint), VisionEncoderDecoderModel)
    old_tensors = source.state_dict()
    copied = 0
    for name, tensor in model.state_dict().items():
        old = old_tensors.get(name)
        if old is None or old.dim() != tensor.dim():
            continue
        if old.shape == tensor.shape:
            tensor.copy_(old)
        elif name.endswith("embeddings.position_embeddings") and old.shape[2] == tensor.shape[2]:
            patches = F.interpolate(
                old[:, 1:].transpose(1, 2), size=tensor.shape[1] - 1, mode="linear"
            )
            tensor.copy_(torch.cat([old[:, :1], patches.transpose(1, 2)], dim=1))
        elif old.shape[1:] == tensor.shape[1:]:
            rows = min(len(old), len(tensor))
            tensor[:rows] = old[:rows]
        else:
            continue
        copied += 1
    return copied


def _pair(encoder: str, decoder: str) -> VisionEncoderDecoderModel:
    try:
        # Cross-attention on: checkpoints of plain language models (GPT-2, ...) lack the
        # flags, and transformers refuses a decoder config without them.
        decoder_config = AutoConfig.from_pretrained(decoder)
        decoder_config.is_decoder = decoder_config.add_cross_attention = True
        return VisionEncoderDecoderModel.from_encoder_decoder_pretrained(
            encoder, decoder, decoder_config=decoder_config
        )
    except Exception as error:
        raise ModelLoadError(
            f"cannot pair encoder {encoder!r} with decoder {decoder!r}: {error}"
        ) from error
