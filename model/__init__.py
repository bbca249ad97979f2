"""Load VisionEncoderDecoder models and turn images into text. Knows nothing of Ray or storage."""

from model.generation import TextGenerator, row_seed
from model.images import ImageDecodeError, decode_image, pixel_arrays
from model.loading import LoadedModel, ModelLoadError, check_model, load_model
from model.settings import GenerationSettings, ModelSettings
from model.tiny import build_tiny_model

__all__ = [
    "GenerationSettings",
    "ImageDecodeError",
    "LoadedModel",
    "ModelLoadError",
    "ModelSettings",
    "TextGenerator",
    "build_tiny_model",
    "check_model",
    "decode_image",
    "load_model",
    "pixel_arrays",
    "row_seed",
]
