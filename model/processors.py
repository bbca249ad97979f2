"""A checkpoint's image processor and tokenizer: what the CPU tasks, which only turn
images into pixels, need of a checkpoint (the model itself is `model.loading`'s)."""

from __future__ import annotations

from typing import Any

from transformers import AutoImageProcessor, AutoTokenizer, PreTrainedTokenizerBase

from model.load_error import ModelLoadError
from model.settings import ModelSettings


def hub_kwargs(settings: ModelSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": settings.trust_remote_code}
    if settings.revision:
        kwargs["revision"] = settings.revision
    return kwargs


def load_error(settings: ModelSettings, what: str, error: Exception) -> ModelLoadError:
    where = f"{settings.name!r}" + (
        f" at revision {settings.revision!r}" if settings.revision else ""
    )
    return ModelLoadError(
        f"cannot load the {what} of model {where}: {error}. Check model.name (a hub id needs "
        "network access or a copy in the Hugging Face cache; a local path needs config.json, "
        "the weights, preprocessor_config.json and the tokenizer files)."
    )


def load_image_processor(settings: ModelSettings) -> Any:
    try:
        return AutoImageProcessor.from_pretrained(settings.source, **hub_kwargs(settings))
    except Exception as error:  # transformers raises OSError, ValueError or KeyError here
        raise load_error(settings, "image processor", error) from error


def load_processors(settings: ModelSettings) -> tuple[Any, PreTrainedTokenizerBase]:
    """Image processor and tokenizer of a checkpoint (TrOCR, Donut, vit-gpt2, ...)."""
    image_processor = load_image_processor(settings)
    try:
        tokenizer = AutoTokenizer.from_pretrained(settings.source, **hub_kwargs(settings))
    except Exception as error:
        raise load_error(settings, "tokenizer", error) from error
    return image_processor, tokenizer
