"""Row counts of committed shards, written beside them in a few index files, so that
`status` need not open every shard's footer (a GET per shard on an object store: minutes
at a million shards). The files are a cache: the listing of committed files stays the
truth, and a shard the index does not cover (a run killed before its last write, a
shard committed by an older version) is read from its footer."""

from __future__ import annotations

import io
import logging
import time

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.output.layout import COUNTS_DIR, LEDGER_DIR
from pipeline.storage import join, write_atomically

log = logging.getLogger(__name__)
SCHEMA = pa.schema([("shard", pa.string()), ("rows", pa.int64()), ("row_errors", pa.int64())])
FLUSH_EVERY_SHARDS = 10_000  # the driver holds no more than this many counts
FLUSH_EVERY_S = 60.0  # nor older ones: a killed run leaves at most a minute to footers


class CountsLog:
    """One run's counts, written to `_shardscribe/counts/<run>-<n>.parquet` every
    FLUSH_EVERY_SHARDS shards or FLUSH_EVERY_S seconds, and by `flush` at the end."""

    def __init__(self, fs: fsspec.AbstractFileSystem, output_root: str, run_id: str):
        self.fs = fs
        self.prefix = join(output_root, LEDGER_DIR, COUNTS_DIR, run_id)
        self.pending: list[tuple[str, int, int]] = []
        self.files = 0
        self.flushed_at = time.monotonic()

    def add(self, shard_id: str, rows: int, row_errors: int) -> None:
        """Note a committed shard; called after its file exists."""
        self.pending.append((shard_id, rows, row_errors))
        if (
            len(self.pending) >= FLUSH_EVERY_SHARDS
            or time.monotonic() - self.flushed_at >= FLUSH_EVERY_S
        ):
            self.flush()

    def flush(self) -> None:
        self.flushed_at = time.monotonic()
        if not self.pending:
            return
        shards, rows, errors = zip(*self.pending, strict=True)
        table = pa.table([list(shards), list(rows), list(errors)], schema=SCHEMA)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        # Numbered so that a later count of the same shard (its file deleted by hand and
        # committed again) sorts after the earlier one and wins.
        path = f"{self.prefix}-{self.files:06d}.parquet"
        try:
            write_atomically(self.fs, path, buffer.getvalue())
        except OSError as error:  # only a cache: status reads these shards' footers
            log.warning("could not write the row counts %s: %s", path, error)
        self.files += 1
        self.pending = []


def read_counts(fs: fsspec.AbstractFileSystem, output_root: str) -> dict[str, tuple[int, int]]:
    """{shard id: (rows, row errors)} of every shard the index files cover, the latest
    count of a shard winning."""
    try:
        paths = sorted(fs.find(join(output_root, LEDGER_DIR, COUNTS_DIR), withdirs=False))
    except FileNotFoundError:
        return {}
    paths = [path for path in paths if path.endswith(".parquet")]  # not a temporary
    counts: dict[str, tuple[int, int]] = {}
    for path in paths:
        table = pq.read_table(io.BytesIO(fs.cat_file(path)))
        columns = (table.column(name).to_pylist() for name in SCHEMA.names)
        for shard, rows, errors in zip(*columns, strict=True):
            counts[shard] = (rows, errors)
    return counts
