"""Settings that decide which model runs and how it generates.

They live in `model/` so that the model code can be used without the pipeline;
`pipeline.job_config.JobConfig` nests them.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model.bundled import DEFAULT_MODEL, resolve_model_name

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
# The fields of GenerationSettings that are arguments of `generate`.
GENERATE_ARGUMENTS = (
    "max_new_tokens",
    "num_beams",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "num_return_sequences",
)
Device = Literal["auto", "cpu", "cuda"]


class ModelSettings(BaseModel):
    """Which `VisionEncoderDecoderModel` checkpoint to load, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        default=DEFAULT_MODEL,
        description="Hub id (e.g. microsoft/trocr-base-printed), local path of a "
        "VisionEncoderDecoderModel checkpoint with its image processor and tokenizer, or a "
        "bundled model (shardscribe/printed-lines, the default: printed text lines, offline).",
        min_length=1,
    )
    revision: str | None = Field(
        default=None,
        description="Hub revision (branch, tag or commit) to pin; None means the default branch.",
    )
    dtype: Dtype = Field(
        default="auto",
        description="Weights dtype. auto: bfloat16 on a GPU that supports it, float16 on "
        "other GPUs, float32 on CPU.",
    )
    device: Device = Field(
        default="auto", description="Where generation runs. auto: cuda when available, else cpu."
    )
    attn_implementation: Literal["sdpa", "eager"] = Field(
        default="sdpa",
        description="Attention kernel. sdpa falls back to the default per part (eager where "
        "a decoder such as TrOCR lacks SDPA).",
    )
    trust_remote_code: bool = Field(
        default=False,
        description="Allow code shipped with a hub checkpoint to run. Off unless you trust it.",
    )

    @field_validator("name")
    @classmethod
    def _bundled_name_exists(cls, name: str) -> str:
        resolve_model_name(name)
        return name

    @property
    def source(self) -> str:
        """What from_pretrained loads: the name, or a bundled model's path. The name, not
        the install-dependent path, is what the run settings record."""
        return resolve_model_name(self.name)


class GenerationSettings(BaseModel):
    """Arguments of `model.generate`, plus the seed and decoder prompt.

    A setting left unset keeps the checkpoint's own generation config, so a run
    gives what `model.generate(pixel_values)` gives unless you say otherwise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Longest text per image, in tokens. Unset: the checkpoint's max_length "
        "(often 20 tokens, which cuts long lines; a warning says so).",
    )
    num_beams: int | None = Field(
        default=None, ge=1, description="Beam width. Unset: the checkpoint's (usually 1, greedy)."
    )
    do_sample: bool | None = Field(
        default=None,
        description="Sample (seeded per image) instead of greedy/beam search. Unset: the "
        "checkpoint's (usually off).",
    )
    temperature: float | None = Field(default=None, gt=0, description="Sampling temperature.")
    top_k: int | None = Field(
        default=None, ge=0, description="Sampling: keep the k likeliest tokens."
    )
    top_p: float | None = Field(
        default=None, gt=0, le=1, description="Sampling: nucleus probability mass to keep."
    )
    num_return_sequences: int | None = Field(
        default=None,
        ge=1,
        description="Texts to keep per image. Above 1 the output gets a candidates column "
        "(text and score, best first); beam search needs num_beams at least this large.",
    )
    seed: int = Field(
        default=0,
        ge=0,
        description="Job seed. With sampling each image draws from a seed derived from "
        "(seed, shard, key), so reruns reproduce it.",
    )
    prompt: str | None = Field(
        default=None,
        description="Decoder prompt the text starts from, e.g. Donut's task token "
        "'<s_cord-v2>'. It is not part of the output text.",
    )

    def generate_overrides(self) -> dict[str, int | float | bool]:
        """The `generate` arguments set here; the rest stay the checkpoint's."""
        names = GENERATE_ARGUMENTS
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


def row_seed(job_seed: int, *parts: str) -> int:
    """A sampling seed derived from the job seed and the row's identity (shard, key)."""
    text = "\0".join([str(job_seed), *parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


class LabelSettings(BaseModel):
    """Scores for labeling: how sure the model is of each text, or which given label fits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score: bool = Field(
        default=False,
        description="Add a score column: the mean per-token log-probability of each text "
        "(0 is certain; lower is less sure).",
    )
    choices: tuple[str, ...] | None = Field(
        default=None,
        description="Choices mode: a file (path or URL) with one label per line, or a list "
        "in YAML. Each image gets the likeliest label as its text, with label_prob (its "
        "probability among the choices) and the whole distribution; nothing is generated, "
        "so generation settings other than the prompt do not apply.",
    )

    @field_validator("choices")
    @classmethod
    def _distinct_labels(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("no labels: give at least one, one per line")
        repeated = sorted({label for label in value if value.count(label) > 1})
        if repeated:
            raise ValueError(f"labels given more than once: {', '.join(repeated)}")
        return value
