"""The job config's schema: one pydantic model of sections, and which of its fields make
an output's fingerprint. Reading it from YAML and flags is `pipeline.config_loading`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from model.images import DEFAULT_MAX_IMAGE_PIXELS
from model.settings import (
    GENERATE_ARGUMENTS,
    GenerationSettings,
    LabelSettings,
    ModelSettings,
)

ShardFormat = Literal["auto", "webdataset", "parquet", "images", "pdf"]
SegmentMode = Literal["none", "lines"]
TextLayerUse = Literal["auto", "prefer", "ignore"]


class Section(BaseModel):
    """A config section: a YAML mapping whose unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterSettings(Section):
    """Where Ray runs; the base of a run's and a training's compute settings."""

    ray_address: str | None = Field(
        default=None,
        description="Ray cluster to join. Unset: RAY_ADDRESS, else a local Ray started for you.",
    )


class InputSettings(Section):
    uri: str = Field(
        description="Where the shards are: a local path or an fsspec URL (file://, s3://, gs://).",
        min_length=1,
    )
    format: ShardFormat = Field(
        default="auto",
        description="Shard format. auto picks the one kind of shard found under the input.",
    )
    image_column: str | None = Field(
        default=None,
        description="Parquet: the image column (bytes or {bytes, path}); detected when unset.",
    )
    key_column: str | None = Field(
        default=None, description="Parquet: the column whose value is the row key; else row index."
    )
    images_per_shard: int = Field(
        default=1000, ge=1, description="Folders of images: files per shard, by sorted path."
    )
    max_image_pixels: int | None = Field(
        default=DEFAULT_MAX_IMAGE_PIXELS,
        ge=1,
        description="Images (and rendered PDF pages) with more pixels become row errors "
        "(decompression-bomb guard); null disables the guard.",
    )
    segment: SegmentMode = Field(
        default="none",
        description="lines: split each image or page into its text lines (deskew, columns, "
        "reading order), read each line, write one row per page with its text and line boxes. "
        "For line models (TrOCR, the bundled one) on pages and PDFs.",
    )
    pdf_dpi: int = Field(
        default=200, ge=36, le=1200, description="PDF: resolution pages are rendered at."
    )
    pdf_text_layer: TextLayerUse = Field(
        default="auto",
        description="PDF: what a page's own text is used for (column text_source says where "
        "each page's text came from). auto: text the document draws (a born-digital page) "
        "is the page's text, no OCR; a scan is read, and so is a scan an earlier OCR laid "
        "an invisible layer over (export replaces that layer). prefer: any usable text "
        "layer, an earlier OCR's too, is the page's text. ignore: every page is read by "
        "OCR (to evaluate it against the PDF's own text).",
    )


class OutputSettings(Section):
    uri: str = Field(description="Where the Parquet files and the ledger go.", min_length=1)
    overwrite: bool = Field(
        default=False,
        description="Discard what the output holds (committed shards and ledger) and start "
        "over, whether or not its settings differ.",
    )
    lease_ttl_s: float = Field(
        default=120.0,
        gt=0,
        description="How long the output lease lasts without renewal (renewed every quarter "
        "of it). A run killed on another host blocks the output at most this long.",
    )
    shutdown_grace_s: float = Field(
        default=20.0,
        ge=0,
        description="On SIGTERM (a preempted pod, `ray job stop`): how long the shards in "
        "flight may take to finish and commit before the run stops. Keep it under the "
        "platform's own grace (Kubernetes: terminationGracePeriodSeconds, 30 by default; "
        "`ray job stop`: RAY_JOB_STOP_WAIT_TIME_S, 3 by default).",
    )


class ComputeSettings(ClusterSettings):
    actors: int | str | None = Field(
        default=None,
        description="Generation actors: N; MIN..MAX, a pool that grows while work waits and "
        "the cluster has room (a node that joins gets actors) and shrinks when idle; or auto: "
        "with GPUs, one per GPU the cluster has now, growing onto GPUs it adds, else 1. "
        "Unset: auto.",
    )
    gpus_per_actor: float | None = Field(
        default=None,
        ge=0,
        description="GPUs per generation actor. Unset: 1 when the cluster has GPUs, else 0.",
    )
    cpus_per_actor: float = Field(default=1, gt=0, description="CPUs per generation actor.")
    threads_per_actor: int | None = Field(
        default=None,
        ge=1,
        description="Torch threads per generation actor on CPU. Unset: the cluster's CPUs "
        "shared out among the actors (Ray alone would give each as many threads as CPUs "
        "it reserves, leaving cores idle).",
    )
    cpus_per_task: float = Field(
        default=0.5,
        gt=0,
        description="CPUs reserved per read/decode task. Keep it unlike cpus_per_actor: "
        "equal shares let Ray fuse decoding into the generation actors.",
    )
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        default=16,
        description="Images per model call: texts in an actor's running set (continuous) or "
        "per generate() call (static). auto: sized by each actor from the memory one image's "
        "generate takes and 0.7 of the accelerator memory free, at most 256 (8 on CPU).",
    )

    batching: Literal["auto", "continuous", "static"] = Field(
        default="auto",
        description="continuous: each actor keeps a running set of texts being generated; "
        "a text that ends leaves at once and the next image takes its place (same texts as "
        "generate). static: one generate call per batch, which computes every text until "
        "the longest ends. auto: continuous where the generation settings allow it (not "
        "beam search, several sequences or history-dependent penalties), else static.",
    )

    @field_validator("actors", mode="before")
    @classmethod
    def _actor_count(cls, value: Any) -> int | str | None:
        """N, "MIN..MAX" or "auto", from YAML or a flag (where every value is a string)."""
        text = str(value).strip() if value is not None else None
        if text is None or text == "auto":
            return text
        low, dots, high = text.partition("..")
        if text.isdigit() and int(text) >= 1:
            return int(text)
        if dots and low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high):
            return f"{int(low)}..{int(high)}"
        raise ValueError("a number of actors (4), a range MIN..MAX (1..8), or auto")

    def actor_pool(self, cluster_gpus: float, gpus_per_actor: float) -> tuple[int, int | None]:
        """(least, most) generation actors; most None: as many as the cluster can hold."""
        if isinstance(self.actors, int):
            return self.actors, self.actors
        if self.actors is None or self.actors == "auto":
            if not gpus_per_actor:
                return 1, 1
            return max(1, int(cluster_gpus // gpus_per_actor)), None
        low, high = self.actors.split("..")
        return int(low), int(high)

    @field_validator("batch_size", mode="wrap")
    @classmethod
    def _one_message_for_batch_size(cls, value: Any, handler: ValidatorFunctionWrapHandler):
        # The union would report one error per member; users need one sentence.
        try:
            return handler(value)
        except ValidationError:
            raise ValueError("should be a positive integer or 'auto'") from None


class RetrySettings(Section):
    max_attempts: int = Field(default=3, ge=1, description="Tries per shard before it fails.")
    backoff_s: float = Field(
        default=2.0, ge=0, description="Wait before the 2nd try; doubles per try after that."
    )
    backoff_max_s: float = Field(default=60.0, ge=0, description="Longest wait between tries.")
    shard_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="A pass in which nothing progresses for this long is cancelled; its "
        "unfinished shards are retried and, after their last try, fail with class timeout. "
        "It must outlast starting the generation actors (loading the model).",
    )


class StorageSettings(Section):
    """Object store access. Unset fields fall back to the standard AWS variables."""

    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, SeaweedFS, R2); else AWS."
    )
    region: str | None = Field(default=None, description="S3 region.")
    access_key_id: str | None = Field(default=None, description="S3 access key id.")
    secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret key. Prefer AWS_SECRET_ACCESS_KEY; never printed."
    )
    session_token: SecretStr | None = Field(
        default=None, description="S3 session token for temporary credentials; never printed."
    )
    anon: bool = Field(default=False, description="Read public buckets without credentials.")
    connect_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds to wait for an object store connection."
    )
    read_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds to wait for an object store response; botocore retries, then "
        "the shard is retried.",
    )


class ProgressSettings(Section):
    log_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between progress lines when not on a terminal."
    )


def section(settings: type[BaseModel], description: str) -> Any:
    """A config section that may be left out, and then takes its defaults."""
    return Field(default_factory=settings, description=description)


class JobConfig(Section):
    """Everything a run needs. YAML sections mirror these fields."""

    input: InputSettings = Field(description="Where the shards are and how to read them.")
    output: OutputSettings = Field(description="Where results go.")
    model: ModelSettings = section(
        ModelSettings,
        "The VisionEncoderDecoder checkpoint (default: the bundled printed-lines).",
    )
    generation: GenerationSettings = section(GenerationSettings, "How text is generated.")
    label: LabelSettings = section(LabelSettings, "Scores and choices, for labeling.")
    compute: ComputeSettings = section(ComputeSettings, "Ray resources and batching.")
    retry: RetrySettings = section(RetrySettings, "Per-shard retry.")
    storage: StorageSettings = section(StorageSettings, "Object store credentials and endpoint.")
    progress: ProgressSettings = section(ProgressSettings, "Progress reporting.")

    @model_validator(mode="after")
    def _consistent_labeling(self) -> JobConfig:
        returns = self.generation.num_return_sequences or 1
        beams = self.generation.num_beams
        generates = self.label.choices is None
        if self.input.segment == "lines" and (not generates or returns > 1):
            raise ValueError(
                "input.segment=lines reads a page as many lines: it takes one text per line "
                "(no label.choices, no generation.num_return_sequences > 1)"
            )
        if generates and returns > 1 and not self.generation.do_sample and (beams or 1) < returns:
            raise ValueError(
                f"generation.num_return_sequences={returns} needs generation.num_beams >= "
                f"{returns} (or do_sample): beam search returns at most num_beams texts"
            )
        return self


# What a run into an existing output may change. The fields of OUTPUT_FIELDS decide
# what an output row contains: they make the output's fingerprint, and a rerun that
# changes one is refused unless --overwrite. The fields of FREE_FIELDS may change
# between runs. Every field of JobConfig is in exactly one (tests/output/test_ledger.py).
OUTPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "input": (
        "format",
        "image_column",
        "key_column",
        "images_per_shard",
        "max_image_pixels",
        "segment",
        "pdf_dpi",
        "pdf_text_layer",
    ),
    "model": ("name", "revision", "dtype", "attn_implementation", "trust_remote_code"),
    "generation": (*GENERATE_ARGUMENTS, "seed", "prompt"),
    "label": ("score", "choices"),
}
FREE_FIELDS: dict[str, tuple[str, ...]] = {
    "input": ("uri",),  # the same shards, moved
    "output": ("uri", "overwrite", "lease_ttl_s", "shutdown_grace_s"),
    "model": ("device",),
    "compute": (
        "actors",
        "gpus_per_actor",
        "cpus_per_actor",
        "threads_per_actor",
        "cpus_per_task",
        "batch_size",
        "batching",
        "ray_address",
    ),
    "retry": ("max_attempts", "backoff_s", "backoff_max_s", "shard_timeout_s"),
    "storage": (
        "endpoint_url",
        "region",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "anon",
        "connect_timeout_s",
        "read_timeout_s",
    ),
    "progress": ("log_interval_s",),
}


# Page reading came after outputs existed: its fields join the fingerprint only when they
# differ from what outputs made before them did (pdf_text_layer's default was "ignore").
_PAGE_FIELDS = {"segment": "none", "pdf_dpi": 200, "pdf_text_layer": "ignore"}


def output_settings(config: JobConfig, reads_pdf: bool = False) -> dict[str, Any]:
    """The values of OUTPUT_FIELDS, by section. `label` is left out while it asks for
    nothing, so outputs written before it was part of the fingerprint still match; so is
    pdf_text_layer when the run reads no PDFs (`reads_pdf`) and leaves it at its default."""
    settings = {
        section: getattr(config, section).model_dump(mode="json", include=set(fields))
        for section, fields in OUTPUT_FIELDS.items()
    }
    if config.label == LabelSettings():
        del settings["label"]
    for name, before in _PAGE_FIELDS.items():
        if settings["input"][name] == before:
            del settings["input"][name]
    default = InputSettings.model_fields["pdf_text_layer"].default
    if not reads_pdf and settings["input"].get("pdf_text_layer") == default:
        del settings["input"]["pdf_text_layer"]
    return settings
