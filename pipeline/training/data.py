"""Image-text shards -> Ray Data datasets of (pixel_values, labels) for training.

The shards are the ones `run` reads (same readers, same decoding). The validation
split is by shard, so no line of a validation shard is ever trained on. Rows that
cannot teach anything (no image, an undecodable one, no text, a text longer than
the label budget) are skipped and counted in the log; a shard that cannot be read
at all stops training with its name, because silently training on less is worse.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import ray
from ray.data._internal.execution.execution_callback import ExecutionCallback

from model.images import ImageDecodeError, decode_image, pixel_arrays
from pipeline.exceptions import InputError
from pipeline.inputs.readers import read_source_rows
from pipeline.inputs.shards import Shard, discover_shards
from pipeline.storage import open_filesystem
from pipeline.training.build import load_processors_for
from pipeline.training.objective import encode_labels
from pipeline.training.train_config import TrainConfig

log = logging.getLogger(__name__)
CHUNK_ROWS = 256  # rows per block out of a shard, so pixels stream instead of piling up
IDLE_NAP_S = 0.02


class NapWhenIdle(ExecutionCallback):
    """Ray Data's scheduling loop blocks in `ray.wait` only until some task has output:
    when the trainer is the bottleneck, a read task held back by backpressure has output
    ready at every step, and the loop spins a whole core (measured on 2 cores: the
    split coordinator at 93 %, the trainer at 87 %). While no consumer waits for a
    block, a short nap per step gives the core back; 20 ms is nothing beside a step."""

    def on_execution_step(self, executor) -> None:
        _, output = executor._output_node
        if output.num_waiting_consumers == 0:
            time.sleep(IDLE_NAP_S)


def split_shards(config: TrainConfig) -> tuple[list[Shard], list[Shard]]:
    """(training shards, validation shards): `validation_shards` of them drawn by seed."""
    fs, root = open_filesystem(config.input.uri, config.storage)
    shards = discover_shards(fs, root, config.input)
    held_out = config.input.validation_shards
    if held_out >= len(shards):
        raise InputError(
            f"input {config.input.uri} has {len(shards)} shard(s); holding out {held_out} for "
            "validation leaves none to train on (lower input.validation_shards)"
        )
    _check_text_column(fs, shards[0], config)
    picked = set(sorted(shards, key=lambda shard: _draw(config.training.seed, shard))[:held_out])
    train = [s for s in shards if s not in picked]
    validation = [s for s in shards if s in picked]
    return train, validation


def _draw(seed: int, shard: Shard) -> bytes:
    """A shard's lot in the validation pick, by its id: shards added to the input later
    never put a shard already trained on into validation (a resumed run stays honest)."""
    return hashlib.sha256(f"{seed}:{shard.id}".encode()).digest()


def _texts(source_passthrough: pa.Table | None, column: str, shard: Shard) -> list[str | None]:
    columns = [] if source_passthrough is None else source_passthrough.column_names
    if column not in columns:
        raise InputError(
            f"shard {shard.id} has no text column {column!r} (found: {', '.join(columns) or 'none'}"
            "); set input.text_column (--text-column)"
        )
    return source_passthrough.column(column).to_pylist()


def _check_text_column(fs, shard: Shard, config: TrainConfig) -> None:
    """Fail before Ray starts when the first shard lacks the text column."""
    _texts(read_source_rows(fs, shard, config.input).passthrough, config.input.text_column, shard)


def read_examples(items: pa.Table, config: TrainConfig) -> Iterator[dict[str, np.ndarray]]:
    """Ray task over one shard: its usable rows as pixel_values + labels, in chunks."""
    processor, tokenizer = load_processors_for(
        config.model.name, config.model.encoder, config.model.decoder
    )
    fs, _ = open_filesystem(config.input.uri, config.storage)
    for item in items.to_pylist():
        shard = Shard.from_item(item)
        source = read_source_rows(fs, shard, config.input)
        texts = _texts(source.passthrough, config.input.text_column, shard)
        images, kept_texts, skipped = [], [], 0
        for data, text, error in zip(source.images, texts, source.errors, strict=True):
            if error is None and text:
                try:
                    images.append(decode_image(data, config.input.max_image_pixels))
                    kept_texts.append(text)
                    continue
                except ImageDecodeError:
                    pass
            skipped += 1
        encoded = encode_labels(kept_texts, tokenizer, config.model.max_target_tokens)
        fits = ~encoded.too_long
        skipped += int(encoded.too_long.sum())
        if skipped:
            log.warning("shard %s: %d of %d rows skipped", shard.id, skipped, len(texts))
        images = [image for image, ok in zip(images, fits, strict=True) if ok]
        labels = encoded.labels[fits]
        for start in range(0, len(images), CHUNK_ROWS):
            yield {
                "pixel_values": pixel_arrays(images[start : start + CHUNK_ROWS], processor),
                "labels": labels[start : start + CHUNK_ROWS],
            }


def examples_dataset(shards: list[Shard], config: TrainConfig, shuffle: bool) -> ray.data.Dataset:
    """One read task per shard; `shuffle` randomises the shard order per epoch."""
    dataset = ray.data.from_items([s.to_item() for s in shards], override_num_blocks=len(shards))
    if shuffle:
        dataset = dataset.randomize_block_order(seed=config.training.seed)
    dataset = dataset.map_batches(
        read_examples, batch_size=1, batch_format="pyarrow", fn_kwargs={"config": config}
    )
    dataset.context.custom_execution_callback_classes.append(NapWhenIdle)
    return dataset


def count_examples(shards: list[Shard], config: TrainConfig) -> int:
    """Usable training rows, to size the learning-rate schedule when epochs are given."""
    return sum(
        len(batch["labels"])
        for batch in examples_dataset(shards, config, shuffle=False).iter_batches(
            batch_size=None, batch_format="numpy"
        )
    )
