"""Atomic per-shard commit: one Parquet file per shard, never seen half-written."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.inputs.passthrough import decode_rows
from pipeline.job_config import JobConfig
from pipeline.output.layout import (
    FINGERPRINT_KEY,
    INPUTS_KEY,
    ROW_ERRORS_KEY,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    output_path,
)
from pipeline.storage import write_atomically

BASE_SCHEMA = pa.schema(
    [("shard", pa.string()), ("key", pa.string()), ("text", pa.string()), ("error", pa.string())]
)
# Labeling columns, after the base ones; which of them a job writes: `output_columns`.
LABEL_FIELDS = [
    pa.field("score", pa.float64()),
    pa.field("candidates", pa.list_(pa.struct([("text", pa.string()), ("score", pa.float64())]))),
    pa.field("label_prob", pa.float64()),
    pa.field("choices", pa.list_(pa.struct([("label", pa.string()), ("prob", pa.float64())]))),
]


# pdf (text the PDF draws), ocr_layer (an earlier OCR's invisible layer) or ocr (read)
TEXT_SOURCE_FIELD = pa.field("text_source", pa.string())


def lines_field(score: bool) -> pa.Field:
    """A page's lines in reading order: box in the page's pixels, text, and the line's
    score when the job scores."""
    box = [(name, pa.int32()) for name in ("x0", "y0", "x1", "y1")]
    scored = [("score", pa.float64())] if score else []
    return pa.field("lines", pa.list_(pa.struct([*box, ("text", pa.string()), *scored])))


def output_columns(config: JobConfig, reads_pdf: bool = False) -> list[str]:
    """The columns a job's output has after the base ones, in schema order: labeling,
    then page reading (text_source where a PDF's own text may be a page's text)."""
    label, generation = config.label, config.generation
    if label.choices is not None:
        columns = ["score", "label_prob", "choices"]
    else:
        several = (generation.num_return_sequences or 1) > 1
        columns = ["score"] * (label.score or several) + ["candidates"] * several
    columns += ["lines"] * (config.input.segment == "lines")
    use = config.input.pdf_text_layer
    return columns + ["text_source"] * (use == "prefer" or (reads_pdf and use == "auto"))


def build_table(
    rows: list[dict[str, Any]],
    fingerprint: str,
    extra_columns: Sequence[str] = (),
    inputs: dict[str, str] | None = None,
) -> pa.Table:
    """The shard's output rows in input order: the base columns, the labeling and page
    columns in `extra_columns`, then the input's passthrough columns; `inputs`, the stamps
    of the files they were read from, in the file's metadata."""
    rows = sorted(rows, key=lambda row: row["index"])
    page_fields = [lines_field("score" in extra_columns), TEXT_SOURCE_FIELD]
    schema = pa.schema(
        [
            *BASE_SCHEMA,
            *(field for field in [*LABEL_FIELDS, *page_fields] if field.name in extra_columns),
        ]
    )
    table = pa.Table.from_pylist(
        [{name: row[name] for name in schema.names} for row in rows], schema=schema
    )
    passthrough = decode_rows([row["passthrough"] for row in rows])
    if passthrough is not None:
        for name, column in zip(passthrough.column_names, passthrough.columns, strict=True):
            table = table.append_column(passthrough.schema.field(name), column)
    row_errors = sum(row["error"] is not None for row in rows)
    metadata = {
        FINGERPRINT_KEY: fingerprint.encode(),
        ROW_ERRORS_KEY: str(row_errors).encode(),
        SCHEMA_VERSION_KEY: SCHEMA_VERSION.encode(),
    }
    if inputs is not None:
        metadata[INPUTS_KEY] = json.dumps(inputs, sort_keys=True).encode()
    return table.replace_schema_metadata(metadata)


def commit_shard(
    fs: fsspec.AbstractFileSystem,
    root: str,
    shard_id: str,
    rows: list[dict],
    fingerprint: str,
    extra_columns: Sequence[str] = (),
    inputs: dict[str, str] | None = None,
) -> pa.Table:
    """Write a shard's rows to `<root>/<shard id>.parquet` (zero rows for an empty shard:
    the file still marks it done). Returns the table written."""
    table = build_table(rows, fingerprint, extra_columns, inputs)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_atomically(fs, output_path(root, shard_id), buffer.getvalue())
    return table
