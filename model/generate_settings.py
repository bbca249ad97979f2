"""Which generation settings `generate` runs with, and which of them a decoder other than
`generate` (the continuous engine, checked drafts) cannot honour row by row."""

from __future__ import annotations

from typing import Any

GENERATE_MAX_LENGTH = 20  # what generate stops at when nothing sets a length

# Generation settings that make `generate` change a row's logits from its own history or
# length; the engine does not apply them, so any of them keeps a run on `generate`.
HISTORY_PROCESSORS = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "min_length": 0,
    "min_new_tokens": None,
    "forced_bos_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "min_p": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "guidance_scale": None,
    "watermarking_config": None,
    "stop_strings": None,
    "penalty_alpha": None,
    "top_h": None,
}
# What `generate` takes for a setting that neither the checkpoint nor the job sets.
_DEFAULTS = {"num_beams": 1, "num_return_sequences": 1, "max_length": GENERATE_MAX_LENGTH}
_SAMPLING_DEFAULTS = {"temperature": 1.0, "top_k": 50, "top_p": 1.0}


def effective_settings(model, generate_kwargs: dict[str, Any], samples: bool) -> dict[str, Any]:
    """The generation settings `generate` runs with: the job's, else the checkpoint's,
    else generate's own defaults."""
    settings = model.generation_config.to_dict() | generate_kwargs
    defaults = _DEFAULTS | (_SAMPLING_DEFAULTS if samples else {})
    return settings | {k: v for k, v in defaults.items() if settings.get(k) is None}


def row_by_row_blocker(settings: dict[str, Any]) -> str | None:
    """The setting that makes `generate` more than an argmax or a draw over each row's
    own logits (beam search, several sequences, history-dependent processors), or None."""
    if settings["num_beams"] > 1:
        return f"beam search (num_beams={settings['num_beams']})"
    if settings["num_return_sequences"] > 1:
        return f"num_return_sequences={settings['num_return_sequences']}"
    for name, neutral in HISTORY_PROCESSORS.items():
        value = settings.get(name)
        if value not in (neutral, None, [], {}):
            return f"generation setting {name}={value!r}"
    return None
