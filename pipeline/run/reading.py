"""The CPU task of a run, one per shard or group of small shards: read the items, split
pages into text lines when asked, decode and preprocess, and yield the rows in chunks, so
pixels stream out instead of piling up for a whole shard (or a whole PDF)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image
from ray.data.extensions import ArrowTensorArray

from model.images import (
    ImageDecodeError,
    check_fits,
    decode_image,
    max_aspect_ratio,
    pixel_arrays,
    to_rgb,
)
from model.pixels import pixel_codes, recipe_from_file
from model.settings import ModelSettings
from pipeline.exceptions import ShardReadError
from pipeline.failures import Failure, FailureClass
from pipeline.inputs.passthrough import encode_rows
from pipeline.inputs.pdf import TextLayer
from pipeline.inputs.readers import read_source_rows
from pipeline.inputs.segmentation import segment_lines
from pipeline.inputs.shards import Shard
from pipeline.job_config import InputSettings, StorageSettings
from pipeline.run.rows import COMMON_FIELDS, item_row, marker_row, needs_model, row_error
from pipeline.storage import is_retryable, open_filesystem

_TRANSPORT_SCHEMA = pa.schema(COMMON_FIELDS)


def read_and_preprocess(
    items: pa.Table,
    input_settings: InputSettings,
    storage: StorageSettings,
    model_settings: ModelSettings,
    chunk_rows: int,
) -> Iterator[pa.Table]:
    """Ray CPU task: the rows of a group of shards (`plan.pack_shards`) in blocks of
    `chunk_rows`, with pixel values; a block may hold rows of several small shards."""
    for item in items.to_pylist():
        shards = (Shard.from_item(shard) for shard in item["shards"])
        rows = itertools.chain.from_iterable(
            read_rows(shard, input_settings, storage) for shard in shards
        )
        if input_settings.segment == "lines":
            limit = pixel_maker(model_settings).max_aspect
            rows = line_rows(rows, limit, input_settings.max_image_pixels)
        while chunk := list(itertools.islice(rows, chunk_rows)):
            yield preprocess(chunk, model_settings, input_settings.max_image_pixels)


def read_rows(
    shard: Shard, input_settings: InputSettings, storage: StorageSettings
) -> Iterator[dict[str, Any]]:
    """One row per item, its `image` the encoded bytes, a PDF page as rendered, or the
    page's text layer; a shard that cannot be read is one marker row with its failure."""
    try:
        fs, _ = open_filesystem(input_settings.uri, storage)
        source = read_source_rows(fs, shard, input_settings)
    except ShardReadError as error:
        yield marker_row(shard.id, Failure(FailureClass.INPUT, str(error)))
        return
    except Exception as error:  # storage or anything else: classify, never lose the shard
        kind = FailureClass.STORAGE if isinstance(error, OSError) else FailureClass.READ
        message = f"{type(error).__name__}: {error}"
        where = shard.paths[0] if len(shard.paths) == 1 else f"{len(shard.paths)} files"
        if shard.paths[0] not in message:  # S3's "Access Denied" does not say of what
            message += f" (reading {where})"
        yield marker_row(shard.id, Failure(kind, message, is_retryable(error)))
        return
    try:
        count = len(source.keys)
        if not count:
            yield marker_row(shard.id)
            return
        passthrough = encode_rows(source.passthrough, count)
        for i, key in enumerate(source.keys):
            row = item_row(shard.id, key, i, count, passthrough[i])
            if source.errors[i] is not None:
                yield row | row_error(FailureClass.INPUT, source.errors[i])
                continue
            try:
                row["image"] = source.images[i]  # a PDF page is rendered here
            except ImageDecodeError as error:
                row |= row_error(FailureClass.DECODE, str(error))
            if isinstance(row["image"], TextLayer):
                row["given_text"] = row["image"].text
                row["text_source"] = row["image"].source
            yield row
    finally:
        source.close()


def line_rows(
    rows: Iterable[dict[str, Any]], max_aspect: float | None, max_pixels: int | None
) -> Iterator[dict[str, Any]]:
    """Each page's rows as one row per text line (`part` of `parts`, with its box and
    crop), widest last so that lines of like length share a generate call; a page with
    no lines is one row of `parts` 0. A text layer's runs come as lines with their text."""
    for row in rows:
        source = row["image"]
        if isinstance(source, TextLayer):
            runs = [{"box": list(box), "given_text": text} for box, text in source.runs]
            yield from _parts(row, runs or [{"given_text": source.text}])
            continue
        if not needs_model(row):
            yield row
            continue
        try:
            page = source if isinstance(source, Image.Image) else decode_image(source, max_pixels)
            lines = segment_lines(page, max_aspect)
        except ImageDecodeError as error:
            yield row | row_error(FailureClass.DECODE, str(error)) | {"image": None}
            continue
        except Exception as error:  # OpenCV on a page it cannot handle: the page's error
            message = f"cannot find the text lines: {type(error).__name__}: {error}"
            yield row | row_error(FailureClass.DECODE, message) | {"image": None}
            continue
        parts = [
            {"box": list(line.box), "continues": line.continues, "image": line.crop}
            for line in lines
        ]
        yield from sorted(_parts(row, parts), key=_aspect)


def _parts(row: dict[str, Any], parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not parts:
        return [row | {"parts": 0, "image": None}]
    return [
        row | {"part": i, "parts": len(parts), "image": None} | part for i, part in enumerate(parts)
    ]


def _aspect(row: dict[str, Any]) -> float:
    image = row["image"]
    return image.width / image.height if isinstance(image, Image.Image) else 0.0


@dataclass(frozen=True)
class PixelMaker:
    """How a model's images become pixels: uint8 codes made with Pillow and numpy where
    `model.pixels` knows the processor (no transformers or torch to import in the CPU
    tasks; the actors turn the codes into values), else float32 values from the
    checkpoint's own image processor. `max_aspect`: the widest line the model reads."""

    make: Callable[[list[Image.Image]], np.ndarray]
    max_aspect: float | None
    blank: np.ndarray  # placeholder pixels for rows without an image


@functools.lru_cache(maxsize=4)
def pixel_maker(settings: ModelSettings) -> PixelMaker:
    config = Path(settings.source) / "preprocessor_config.json"
    recipe = recipe_from_file(config) if config.is_file() else None
    if recipe is not None:
        # uint8 codes: a quarter of the bytes to the actors, which make them values
        make, limit = functools.partial(pixel_codes, recipe=recipe), recipe.max_aspect_ratio
    else:
        from model.processors import load_image_processor  # transformers: seconds to import

        processor = load_image_processor(settings)
        make = functools.partial(pixel_arrays, image_processor=processor)
        limit = max_aspect_ratio(processor)
    blank = np.zeros_like(make([Image.new("RGB", (1, 1))])[0])
    return PixelMaker(make, limit, blank)


def preprocess(
    rows: list[dict[str, Any]], model_settings: ModelSettings, max_image_pixels: int | None
) -> pa.Table:
    """Decode image bytes and run the image processor on the rows the model reads. A bad
    image becomes a row error ('decode: ...'); rows without an image get placeholder
    pixels."""
    maker = pixel_maker(model_settings)
    pictures: dict[int, Image.Image] = {}
    for i, row in enumerate(rows):
        if not needs_model(row):
            continue
        image = row["image"]
        try:
            if not isinstance(image, Image.Image):
                image = decode_image(image, max_image_pixels)
            if image.mode != "RGB":  # line crops are greyscale
                image = to_rgb(image)
            check_fits(image, maker.max_aspect)
        except ImageDecodeError as error:
            rows[i] = row | row_error(FailureClass.DECODE, str(error))
            continue
        pictures[i] = image
    pixels = np.repeat(maker.blank[None], len(rows), axis=0)
    if pictures:
        pixels[list(pictures)] = maker.make(list(pictures.values()))
    table = pa.Table.from_pylist(rows, schema=_TRANSPORT_SCHEMA)
    return table.append_column("pixel_values", ArrowTensorArray.from_numpy(pixels))
