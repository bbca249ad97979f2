"""The rows that travel from the CPU tasks through the actors to the driver.

A row is one part of one input item: the whole image (`part` 0 of `parts` 1), or, when
pages are segmented, one of its lines (`part` i of `parts` n, with its `box`). A page
with no lines is one row of `parts` 0, which the actors skip. `index` is the item's
position in the shard and `shard_rows` the shard's item count, so the driver knows when
a shard is complete. A shard that fails to read, or that is empty, becomes one marker
row with index -1.
"""

from __future__ import annotations

from dataclasses import fields

import pyarrow as pa

from model.engine_stats import EngineStats
from pipeline.failures import Failure, FailureClass
from pipeline.output.commit import LABEL_FIELDS

COMMON_FIELDS = [
    pa.field("shard", pa.string()),
    pa.field("key", pa.string()),
    pa.field("index", pa.int64()),
    pa.field("part", pa.int64()),
    pa.field("parts", pa.int64()),
    pa.field("box", pa.list_(pa.int32())),  # x0, y0, x1, y1 of a line on its page
    pa.field("continues", pa.bool_()),  # a piece of the line before, cut for width
    pa.field("given_text", pa.string()),  # text taken from a PDF's text layer: no OCR
    pa.field("text_source", pa.string()),  # where given_text came from (pdf, ocr_layer)
    pa.field("error", pa.string()),  # the row's error text, as committed
    pa.field("error_class", pa.string()),
    pa.field("passthrough", pa.binary()),
    pa.field("shard_rows", pa.int64()),
    pa.field("shard_error", pa.string()),  # the shard's failure: message, class, retry
    pa.field("shard_error_class", pa.string()),
    pa.field("retryable", pa.bool_()),
]
COMMON_NAMES = [field.name for field in COMMON_FIELDS]
# What the actor's model computed since its last block, on the first row of a block (the
# driver adds them up into the run's figures; they are not part of the output).
ENGINE_STATS = pa.field(
    "engine_stats",
    pa.struct(
        [
            pa.field(f.name, pa.float64() if f.type in (float, "float") else pa.int64())
            for f in fields(EngineStats)
        ]
    ),
)
# When an actor reached each step of its start-up (seconds since the epoch), on the
# first row it returns: the driver puts them beside its own start-up steps.
ACTOR_STARTUP_STEPS = (
    "actor_started",  # its worker process up, running the stage's constructor
    "model_imported",  # torch, transformers and the model code imported
    "model_loaded",
    "first_read",  # the first block of read and preprocessed rows reached it
    "first_generated",  # the first block's rows generated
)
ACTOR_STARTUP = pa.field(
    "actor_startup", pa.struct([pa.field(step, pa.float64()) for step in ACTOR_STARTUP_STEPS])
)
RESULT_SCHEMA = pa.schema(
    [
        *COMMON_FIELDS,
        pa.field("text", pa.string()),
        *LABEL_FIELDS,
        ENGINE_STATS,
        ACTOR_STARTUP,
    ]
)
LABEL_NAMES = [field.name for field in LABEL_FIELDS]


def item_row(shard_id: str, key: str, index: int, shard_rows: int, passthrough: bytes) -> dict:
    """A whole item, no error yet; `image` is filled in by the reader."""
    return {
        "shard": shard_id,
        "key": key,
        "index": index,
        "part": 0,
        "parts": 1,
        "box": None,
        "continues": False,
        "given_text": None,
        "text_source": None,
        "error": None,
        "error_class": None,
        "passthrough": passthrough,
        "shard_rows": shard_rows,
        "shard_error": None,
        "shard_error_class": None,
        "retryable": False,
        "image": None,
    }


def marker_row(shard_id: str, failure: Failure | None = None) -> dict:
    """The one row of a shard that failed to read (`failure`) or has no items."""
    return item_row(shard_id, "", -1, 0, b"") | {
        "shard_error": failure and failure.message,
        "shard_error_class": failure and failure.kind.value,
        "retryable": bool(failure and failure.retryable),
    }


def row_error(kind: FailureClass, message: str) -> dict:
    """A row's error columns."""
    return {"error": str(Failure(kind, message)), "error_class": kind.value}


def needs_model(row: dict) -> bool:
    """Whether the actors read this row: an item or line with pixels and no error."""
    return (
        row["index"] >= 0
        and row["error"] is None
        and row["parts"] > 0
        and row["given_text"] is None
    )
