"""Where everything of an output lives: one Parquet file per shard, and the ledger
under `_shardscribe/` (the run's settings, failed shards, row errors, run history,
row counts, the lease). Bump SCHEMA_VERSION when the files' meaning changes."""

from __future__ import annotations

from pipeline.storage import join

SCHEMA_VERSION = "1"
LEDGER_DIR = "_shardscribe"
RUN_FILE = "run.json"  # the output's settings, fingerprint, input and shard count
FAILED_DIR = "failed"  # one JSON record per shard that failed after its retries
ROW_ERRORS_DIR = "row_errors"  # one JSON-lines file per committed shard with row errors
RUNS_DIR = "runs"  # one JSON record per run: the run history
COUNTS_DIR = "counts"  # committed shards' row counts, a Parquet file per 10,000 (status)
LEASE_FILE = "lease.json"  # who runs into the output now
# Parquet footer keys of every shard file.
FINGERPRINT_KEY = b"shardscribe.fingerprint"
ROW_ERRORS_KEY = b"shardscribe.row_errors"
SCHEMA_VERSION_KEY = b"shardscribe.schema_version"
INPUTS_KEY = b"shardscribe.inputs"  # JSON {input file: its stamp when read} (inputs/stamps.py)


def output_path(root: str, shard_id: str) -> str:
    return join(root, f"{shard_id}.parquet")
