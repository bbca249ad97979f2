"""The Ray Data stages: read + decode + preprocess a shard (CPU task), generate (actor).

Rows carry `shard`, `key`, `index` (position in the shard) and `shard_rows` (how
many rows the shard has) so the driver knows when a shard is complete. A shard
that fails to read, or that is empty, becomes one marker row with index -1.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from ray.data.extensions import ArrowTensorArray

from model import (
    GenerationSettings,
    ImageDecodeError,
    ModelLoadError,
    ModelSettings,
    TextGenerator,
    decode_image,
    load_model,
    pixel_arrays,
    row_seed,
)
from model.batching import auto_batch_size
from model.choices import ChoiceScorer
from model.images import check_fits
from model.loading import load_processors
from model.settings import LabelSettings
from pipeline.config import InputSettings, StorageSettings
from pipeline.failures import Failure, FailureClass
from pipeline.inputs.passthrough import encode_rows
from pipeline.inputs.readers import ShardReadError, read_source_rows
from pipeline.inputs.shards import Shard
from pipeline.output.commit import LABEL_FIELDS
from pipeline.storage import is_retryable, open_filesystem

log = logging.getLogger(__name__)

_COMMON_FIELDS = [
    pa.field("shard", pa.string()),
    pa.field("key", pa.string()),
    pa.field("index", pa.int64()),
    pa.field("error", pa.string()),  # the row's error text, as committed
    pa.field("error_class", pa.string()),
    pa.field("passthrough", pa.binary()),
    pa.field("shard_rows", pa.int64()),
    pa.field("shard_error", pa.string()),  # the shard's failure: message, class, retry
    pa.field("shard_error_class", pa.string()),
    pa.field("retryable", pa.bool_()),
]
READ_SCHEMA = pa.schema([*_COMMON_FIELDS, pa.field("image", pa.binary())])
RESULT_SCHEMA = pa.schema([*_COMMON_FIELDS, pa.field("text", pa.string()), *LABEL_FIELDS])
LABEL_NAMES = [field.name for field in LABEL_FIELDS]


def _marker(shard_id: str, failure: Failure | None = None) -> dict:
    return {
        "shard": shard_id,
        "key": "",
        "index": -1,
        "error": None,
        "error_class": None,
        "passthrough": b"",
        "shard_rows": 0,
        "shard_error": failure and failure.message,
        "shard_error_class": failure and failure.kind.value,
        "retryable": bool(failure and failure.retryable),
        "image": None,
    }


def _row_error(kind: FailureClass, message: str) -> tuple[str, str]:
    """A row's (error, error_class) columns."""
    return str(Failure(kind, message)), kind.value


def _read_one(item: dict[str, Any], input_settings: InputSettings, storage: StorageSettings):
    shard = Shard.from_item(item)
    try:
        fs, _ = open_filesystem(input_settings.uri, storage)
        source = read_source_rows(fs, shard, input_settings)
    except ShardReadError as error:
        return [_marker(shard.id, Failure(FailureClass.INPUT, str(error)))]
    except Exception as error:  # storage or anything else: classify, never lose the shard
        kind = FailureClass.STORAGE if isinstance(error, OSError) else FailureClass.READ
        message = f"{type(error).__name__}: {error}"
        return [_marker(shard.id, Failure(kind, message, is_retryable(error)))]
    if not source.keys:
        return [_marker(shard.id)]
    passthrough = encode_rows(source.passthrough, len(source.keys))
    n = len(source.keys)
    no_error = (None, None)
    errors = [
        no_error if error is None else _row_error(FailureClass.INPUT, error)
        for error in source.errors
    ]
    return [
        {
            "shard": shard.id,
            "key": source.keys[i],
            "index": i,
            "error": errors[i][0],
            "error_class": errors[i][1],
            "passthrough": passthrough[i],
            "shard_rows": n,
            "shard_error": None,
            "shard_error_class": None,
            "retryable": False,
            "image": source.images[i],
        }
        for i in range(n)
    ]


def read_and_preprocess(
    items: pa.Table,
    input_settings: InputSettings,
    storage: StorageSettings,
    model_settings: ModelSettings,
    chunk_rows: int,
) -> Iterator[pa.Table]:
    """Ray CPU task, one per shard: read the shard, then decode and preprocess it in
    chunks of `chunk_rows`, each yielded as its own block so pixels stream out instead
    of piling up for a whole shard."""
    for item in items.to_pylist():
        rows = _read_one(item, input_settings, storage)
        for start in range(0, len(rows), chunk_rows):
            chunk = pa.Table.from_pylist(rows[start : start + chunk_rows], schema=READ_SCHEMA)
            yield preprocess(chunk, model_settings, input_settings.max_image_pixels)


@functools.lru_cache(maxsize=4)
def _image_processor(settings: ModelSettings) -> Any:
    image_processor, _ = load_processors(settings)
    return image_processor


@functools.lru_cache(maxsize=4)
def _blank_pixels(settings: ModelSettings) -> np.ndarray:
    """Placeholder pixels for rows without an image, shaped like the model's input."""
    return np.zeros_like(pixel_arrays([Image.new("RGB", (1, 1))], _image_processor(settings))[0])


def preprocess(
    batch: pa.Table, model_settings: ModelSettings, max_image_pixels: int | None
) -> pa.Table:
    """Decode image bytes and run the image processor.

    A bad image becomes a row error ('decode: ...'); its row keeps placeholder pixels.
    """
    errors = batch.column("error").to_pylist()
    classes = batch.column("error_class").to_pylist()
    images = batch.column("image").to_pylist()
    decoded: dict[int, Image.Image] = {}
    for i, (data, index) in enumerate(zip(images, batch.column("index").to_pylist(), strict=True)):
        if index < 0 or errors[i] is not None:
            continue
        try:
            image = decode_image(data, max_image_pixels)
            check_fits(image, _image_processor(model_settings))
        except ImageDecodeError as error:
            errors[i], classes[i] = _row_error(FailureClass.DECODE, str(error))
            continue
        decoded[i] = image
    pixels = np.repeat(_blank_pixels(model_settings)[None], batch.num_rows, axis=0)
    if decoded:
        pixels[list(decoded)] = pixel_arrays(
            list(decoded.values()), _image_processor(model_settings)
        )
    batch = batch.drop_columns(["image"])
    for name, values in (("error", errors), ("error_class", classes)):
        batch = batch.set_column(
            batch.schema.get_field_index(name), name, pa.array(values, pa.string())
        )
    return batch.append_column("pixel_values", ArrowTensorArray.from_numpy(pixels))


class GenerationStage:
    """Ray actor stage: the model is loaded once per actor, then batched generate (or, in
    choices mode, batched scoring of the given labels)."""

    def __init__(
        self,
        model_settings: ModelSettings,
        generation: GenerationSettings,
        label: LabelSettings,
        torch_threads: int | None,
        batch_size: int | Literal["auto"],
    ):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        self.load_error: str | None = None
        try:
            loaded = load_model(model_settings)
        except ModelLoadError as error:
            # Reported as data on every row, so the driver stops with this message; an
            # exception here would reach it only as the text of Ray's actor death.
            self.load_error = str(error)
            return
        self.predictor = (
            TextGenerator(loaded, generation, score=label.score)
            if label.choices is None
            else ChoiceScorer(loaded, label.choices, generation.prompt)
        )
        self.seed = generation.seed
        self.batch_size = batch_size  # "auto": sized on the first batch

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        errors = list(batch["error"])
        n = len(errors)
        results: dict[str, list] = {name: [None] * n for name in ("text", *LABEL_NAMES)}
        shard_errors = list(batch["shard_error"])
        shard_error_classes = list(batch["shard_error_class"])
        retryable = [bool(x) for x in batch["retryable"]]
        todo = [i for i, e in enumerate(errors) if e is None and batch["index"][i] >= 0]
        if self.load_error is not None:
            shard_errors = [self.load_error] * n
            shard_error_classes = [FailureClass.MODEL_LOAD.value] * n
            todo = []
        if todo:
            seeds = [row_seed(self.seed, batch["shard"][i], batch["key"][i]) for i in todo]
            try:
                for start, stop in self._batches(batch["pixel_values"], todo):
                    rows = todo[start:stop]
                    predictions = self.predictor.predict(
                        batch["pixel_values"][rows], seeds[start:stop]
                    )
                    for i, prediction in zip(rows, predictions, strict=True):
                        for name, column in results.items():
                            column[i] = getattr(prediction, name)
            except Exception as error:  # e.g. out of memory: retry the shards, not the job
                log.exception("generation failed for a batch")
                message = f"{type(error).__name__}: {error}"
                for i in todo:
                    shard_errors[i], retryable[i] = message, True
                    shard_error_classes[i] = FailureClass.MODEL.value
        columns = {
            name: list(batch[name])
            for name in ("shard", "key", "index", "passthrough", "shard_rows")
        }
        columns |= {
            "error": errors,
            "error_class": list(batch["error_class"]),
            "shard_error": shard_errors,
            "shard_error_class": shard_error_classes,
            "retryable": retryable,
        }
        return pa.Table.from_pydict(columns | results, schema=RESULT_SCHEMA)

    def _batches(self, pixels: np.ndarray, todo: list[int]) -> list[tuple[int, int]]:
        """(start, stop) positions in `todo` of each generate call."""
        if self.batch_size == "auto":
            probe = pixels[todo[:1]]
            self.batch_size = auto_batch_size(
                self.predictor.loaded.device, lambda: self.predictor.predict(probe, [0])
            )
            log.info("batch size auto: %d images per generate call", self.batch_size)
        size = self.batch_size
        return [(start, min(start + size, len(todo))) for start in range(0, len(todo), size)]
