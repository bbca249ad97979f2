"""Load a `VisionEncoderDecoderModel` with its image processor and tokenizer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, VisionEncoderDecoderModel

from model.checking import check_special_tokens
from model.drafting import load_ctc_head
from model.line_frames import uses_text_frames
from model.load_error import ModelLoadError
from model.pixels import processor_value_table
from model.processors import hub_kwargs, load_error, load_processors
from model.settings import ModelSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for `generate`, with what it needs to read images and write text."""

    model: VisionEncoderDecoderModel
    image_processor: Any
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    value_table: torch.Tensor  # (3, 256) on the device: uint8 pixel codes -> values
    ctc_head: torch.nn.Linear | None = None  # a text-frame model's drafter, where saved

    def model_input(self, pixels: np.ndarray) -> torch.Tensor:
        """Pixels as the model takes them, on its device. uint8 codes (`model.pixels`,
        a quarter of the bytes of float32 on the way here) become the processor's values
        there, by table lookup: the same floats the processor gives."""
        tensor = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)
        if tensor.dtype == torch.uint8:
            codes = tensor.long()
            tensor = torch.stack([self.value_table[c][codes[:, c]] for c in range(3)], dim=1)
        return tensor.to(self.dtype)


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("model.device is 'cuda' but torch sees no CUDA device")
    return torch.device(setting)


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU."""
    if setting != "auto":
        return getattr(torch, setting)
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_model(settings: ModelSettings) -> LoadedModel:
    """Load weights, processor and tokenizer onto the configured device, in eval mode."""
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    kwargs = hub_kwargs(settings) | {"dtype": dtype}
    try:
        try:
            model = VisionEncoderDecoderModel.from_pretrained(
                settings.source, attn_implementation=settings.attn_implementation, **kwargs
            )
        except ValueError as error:
            if settings.attn_implementation != "sdpa" or "attention" not in str(error):
                raise
            # Some decoders (TrOCR) lack SDPA; the default picks SDPA per part where it exists.
            log.info(
                "model %s has no SDPA for every part; using the default per part", settings.name
            )
            model = VisionEncoderDecoderModel.from_pretrained(settings.source, **kwargs)
    except Exception as error:
        raise load_error(settings, "weights", error) from error
    check_special_tokens(model.config, settings.name)
    image_processor, tokenizer = load_processors(settings)
    model.to(device).eval()
    table = torch.from_numpy(processor_value_table(image_processor)).to(device)
    head = load_ctc_head(settings.source, model) if uses_text_frames(model) else None
    return LoadedModel(model, image_processor, tokenizer, device, dtype, table, head)
