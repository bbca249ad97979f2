"""The training config: one pydantic model with the same rules as the job config
(YAML sections, `extra="forbid"`, flags override fields, errors name the field)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.job_config import ClusterSettings, InputSettings, Section, StorageSettings, section
from pipeline.storage import join


class TrainInputSettings(InputSettings):
    text_column: str = Field(
        default="txt",
        description="The target text: a Parquet column, or the sidecar of WebDataset samples "
        "(<key>.txt is the column txt).",
        min_length=1,
    )
    validation_shards: int = Field(
        default=1,
        ge=0,
        description="Shards held out for validation, picked from the sorted list by the seed.",
    )


class TrainModelSettings(Section):
    name: str | None = Field(
        default=None, description="A VisionEncoderDecoder checkpoint (path or hub id) to fine-tune."
    )
    encoder: str | None = Field(
        default=None,
        description="Encoder checkpoint, or a built-in config (vit-line-tiny, vit-line-small, "
        "vit-line-long), "
        "paired with decoder by from_encoder_decoder_pretrained.",
    )
    decoder: str | None = Field(
        default=None,
        description="Decoder checkpoint, or a built-in config (trocr-char-tiny, "
        "trocr-char-small) over a character tokenizer.",
    )
    init_from: str | None = Field(
        default=None,
        description="A checkpoint to take the starting weights from where they fit (warm "
        "start): same shapes copied, position tables interpolated, a smaller vocabulary "
        "fills the first rows.",
    )
    max_target_tokens: int = Field(
        default=64, ge=2, description="Longest target in tokens, eos included; longer rows skip."
    )

    @model_validator(mode="after")
    def _one_way_to_get_a_model(self) -> TrainModelSettings:
        if self.name and (self.encoder or self.decoder):
            raise ValueError("model: give name (a checkpoint) or encoder + decoder, not both")
        if not self.name and not (self.encoder and self.decoder):
            raise ValueError("model: give name (a checkpoint) or both encoder and decoder")
        return self


class OptimisationSettings(Section):
    learning_rate: float = Field(default=5e-4, gt=0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    schedule: Literal["cosine", "linear", "constant_with_warmup"] = Field(
        default="cosine", description="Learning-rate schedule after the warmup."
    )
    warmup_steps: int = Field(default=200, ge=0, description="Linear warmup, in optimizer steps.")
    epochs: int = Field(default=1, ge=1, description="Passes over the training shards.")
    max_steps: int | None = Field(
        default=None, ge=1, description="Optimizer steps; when set it wins over epochs."
    )
    batch_size: int = Field(default=32, ge=1, description="Examples per worker per step.")
    grad_accumulation: int = Field(
        default=1, ge=1, description="Batches whose gradients add up to one optimizer step."
    )
    grad_clip: float = Field(default=1.0, gt=0, description="Gradient norm clip.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        default="auto",
        description="GPU autocast dtype. auto: bf16 where supported, else fp16; none on CPU.",
    )
    ctc_weight: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Weight of an auxiliary CTC loss on the encoder frames (training only). "
        "0.5 makes column-patch line encoders trained from scratch look at the image.",
    )
    ctc_warmup_steps: int = Field(
        default=200,
        ge=0,
        description="On a warm start (model name or init_from, no checkpoint to resume), "
        "steps in which the new CTC head learns alone and the model from cross-entropy "
        "only: a random head's loss would otherwise swamp what the model knows.",
    )
    seed: int = Field(default=0, description="Seeds weights, data order and the validation pick.")


class EvaluationSettings(Section):
    every_steps: int = Field(
        default=500, ge=1, description="Evaluate and checkpoint every this many steps."
    )
    max_rows: int = Field(default=256, ge=1, description="Validation rows per evaluation.")
    num_beams: int = Field(default=1, ge=1, description="Beams for the validation generate.")
    max_new_tokens: int = Field(default=64, ge=1, description="Tokens per validation line.")
    log_every_steps: int = Field(default=50, ge=1, description="Steps between loss lines.")


class TrainOutputSettings(Section):
    uri: str = Field(
        description="Where the trained model goes (save_pretrained: model, image processor, "
        "tokenizer), a path or an fsspec URL; `shardscribe run --model` takes it as is.",
        min_length=1,
    )
    checkpoints_uri: str | None = Field(
        default=None,
        description="Where checkpoints go; a rerun resumes from the latest. "
        "Unset: <output>/checkpoints.",
    )
    keep_checkpoints: int = Field(default=2, ge=1, description="Checkpoints kept (the latest).")

    def checkpoints(self) -> str:
        return self.checkpoints_uri or join(self.uri, "checkpoints")


class TrainComputeSettings(ClusterSettings):
    workers: int = Field(default=1, ge=1, description="Ray Train workers (data parallel).")
    use_gpu: bool | None = Field(
        default=None, description="One GPU per worker. Unset: when the cluster has GPUs."
    )
    cpus_per_worker: float = Field(default=1, gt=0, description="CPUs reserved per worker.")
    threads_per_worker: int | None = Field(
        default=None,
        ge=1,
        description="Torch threads per worker on CPU. Unset: the cluster's CPUs shared out, "
        "less one for reading the data.",
    )


class TrainConfig(Section):
    """Everything `shardscribe train` needs. YAML sections mirror these fields."""

    input: TrainInputSettings = Field(description="The image-text shards.")
    output: TrainOutputSettings = Field(description="Where the model and checkpoints go.")
    model: TrainModelSettings = Field(description="What to train.")
    training: OptimisationSettings = section(OptimisationSettings, "Optimisation.")
    evaluation: EvaluationSettings = section(EvaluationSettings, "Validation and logging.")
    compute: TrainComputeSettings = section(TrainComputeSettings, "Ray Train resources.")
    storage: StorageSettings = section(StorageSettings, "Object store access.")
