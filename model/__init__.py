"""Load VisionEncoderDecoder models and turn images into text. Knows nothing of Ray or storage.

Names are imported on first use (PEP 562), so `import model.settings` or the CLI's
`--help` does not pay for torch and transformers."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "GenerationSettings": "model.settings",
    "ModelSettings": "model.settings",
    "ImageDecodeError": "model.images",
    "decode_image": "model.images",
    "pixel_arrays": "model.images",
    "LoadedModel": "model.loading",
    "check_model": "model.checking",
    "load_model": "model.loading",
    "ModelLoadError": "model.load_error",
    "TextGenerator": "model.generation",
    "row_seed": "model.settings",
    "build_tiny_model": "model.tiny",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
