"""What the driver checks of a checkpoint before any worker starts: its config, image
processor and tokenizer load and its special token ids are set; and what pins its
weights for the run's fingerprint. No torch here: the driver does not need it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from transformers import AutoConfig

from model.load_error import ModelLoadError
from model.processors import hub_kwargs, load_error, load_processors
from model.settings import ModelSettings


def check_special_tokens(config: Any, name: str) -> None:
    """Generation needs both ids; without them `generate` fails late and obscurely."""
    for field in ("decoder_start_token_id", "pad_token_id"):
        if getattr(config, field, None) is None:
            raise ModelLoadError(
                f"model {name!r} has no {field} in its config; set it (for TrOCR-style models "
                f"decoder_start_token_id is usually the tokenizer's eos or bos id, pad_token_id "
                f"its pad id) with model.config.{field} = ... and save_pretrained again"
            )


def model_identity(settings: ModelSettings, config: Any) -> str:
    """What pins the weights: the hub commit, or a digest of a local checkpoint's files.

    It goes into the run fingerprint, so a rerun with other weights is noticed.
    """
    path = Path(settings.source)
    if not path.is_dir():
        return f"hub:{settings.name}@{getattr(config, '_commit_hash', None) or settings.revision}"
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path)}:{file.stat().st_size}\n".encode())
        if file.suffix == ".json":
            digest.update(file.read_bytes())
    return f"local:{digest.hexdigest()[:16]}"


def check_model(settings: ModelSettings) -> str:
    """Fail fast, before any worker starts: config, processor and tokenizer load and
    the special token ids are set. Returns the model identity for the fingerprint."""
    try:
        config = AutoConfig.from_pretrained(settings.source, **hub_kwargs(settings))
    except Exception as error:
        raise load_error(settings, "config", error) from error
    if getattr(config, "model_type", None) != "vision-encoder-decoder":
        raise ModelLoadError(
            f"model {settings.name!r} is a {getattr(config, 'model_type', '?')!r} model, "
            "not a vision-encoder-decoder checkpoint"
        )
    check_special_tokens(config, settings.name)
    load_processors(settings)
    return model_identity(settings, config)
