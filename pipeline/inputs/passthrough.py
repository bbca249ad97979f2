"""Input columns carried untouched from a shard to its output file.

Each row's columns travel as one small Arrow IPC message, so their types survive
the trip through Ray exactly, and shards with different columns never have to
share one Ray block schema.
"""

from __future__ import annotations

import pyarrow as pa


def encode_rows(table: pa.Table | None, num_rows: int) -> list[bytes]:
    """One IPC message per row; b'' for every row when there are no columns."""
    if table is None or table.num_columns == 0:
        return [b""] * num_rows
    encoded = []
    for batch in table.combine_chunks().to_batches(max_chunksize=1):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        encoded.append(sink.getvalue().to_pybytes())
    return encoded


def decode_rows(encoded: list[bytes]) -> pa.Table | None:
    """The rows back as one table, in the given order; None when they carry no columns."""
    if not encoded or not encoded[0]:
        return None
    return pa.concat_tables(pa.ipc.open_stream(message).read_all() for message in encoded)
