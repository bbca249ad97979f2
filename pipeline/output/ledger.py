"""The ledger under `<output>/_shardscribe/`: run settings, fingerprint, failed shards.

Committed shards are the output files themselves; the ledger only adds what those
cannot say: which settings made them, and which shards failed and why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec

from pipeline.exceptions import OutputConflictError
from pipeline.failures import Failure
from pipeline.job_config import JobConfig, output_settings
from pipeline.output.layout import (
    FAILED_DIR,
    LEASE_FILE,
    LEDGER_DIR,
    ROW_ERRORS_DIR,
    RUN_FILE,
    RUNS_DIR,
    SCHEMA_VERSION,
)
from pipeline.output.listing import committed_files
from pipeline.storage import join, write_atomically


def new_run_id() -> str:
    """Sortable by start time, unique across hosts."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def run_settings(config: JobConfig, model_identity: str, reads_pdf: bool = False) -> dict[str, Any]:
    """What the output's fingerprint is made of: the settings that decide what its rows
    contain (`pipeline.job_config.OUTPUT_FIELDS`), the model's identity, the schema version."""
    settings = output_settings(config, reads_pdf) | {"schema_version": SCHEMA_VERSION}
    settings["model"]["identity"] = model_identity
    return settings


def fingerprint_of(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    changed = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _differences(a, b, f"{prefix}{name}.")
        elif a != b:
            changed.append(f"{prefix}{name}: {a!r} -> {b!r}")
    return changed


@dataclass(frozen=True)
class FailedShard:
    shard: str
    error_class: str
    error: str  # "<class>: <message>"
    attempts: int


class Ledger:
    """Reads and writes `<output>/_shardscribe/`."""

    def __init__(self, fs: fsspec.AbstractFileSystem, output_root: str):
        self.fs = fs
        self.root = output_root
        self.dir = join(output_root, LEDGER_DIR)

    def read_run(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.fs.cat_file(join(self.dir, RUN_FILE)))
        except FileNotFoundError:
            return None

    def start_run(
        self, settings: dict[str, Any], input_uri: str, shards_total: int, overwrite: bool
    ) -> str:
        """Record this run's settings; refuse, or with `overwrite` clear, an output made
        with other settings. Returns the fingerprint."""
        fingerprint = fingerprint_of(settings)
        previous = self.read_run()
        if previous and previous["fingerprint"] != fingerprint and not overwrite:
            changed = "; ".join(_differences(previous["settings"], settings))
            raise OutputConflictError(
                f"output {self.root} holds results made with other settings ({changed}); "
                "use another output, or --overwrite to discard them and start over"
            )
        if previous and overwrite:  # start over, whether or not the settings changed
            self.clear()
        record = {
            "fingerprint": fingerprint,
            "settings": settings,
            "input": input_uri,
            "shards_total": shards_total,
            "updated": time.time(),
        }
        write_atomically(self.fs, join(self.dir, RUN_FILE), json.dumps(record, indent=1).encode())
        return fingerprint

    def clear(self) -> None:
        """Remove every committed file and the ledger, except the lease (for --overwrite)."""
        paths = list(committed_files(self.fs, self.root).values())
        if self.fs.exists(self.dir):
            paths += [p for p in self.fs.find(self.dir) if not p.endswith(f"/{LEASE_FILE}")]
        if paths:
            self.fs.rm(paths)

    def _failed_path(self, shard_id: str) -> str:
        return join(self.dir, FAILED_DIR, f"{shard_id}.json")

    def record_failure(self, shard_id: str, failure: Failure, attempts: int) -> None:
        record = {
            "shard": shard_id,
            "error_class": failure.kind.value,
            "error": str(failure),
            "attempts": attempts,
            "time": time.time(),
        }
        write_atomically(self.fs, self._failed_path(shard_id), json.dumps(record).encode())

    def clear_failure(self, shard_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._failed_path(shard_id))

    def failures(self) -> list[FailedShard]:
        records = self._read_records(FAILED_DIR)
        return [
            FailedShard(r["shard"], r["error_class"], r["error"], r["attempts"]) for r in records
        ]

    def record_row_errors(self, shard_id: str, row_errors: list[tuple[str, str, str]]) -> None:
        """One JSON line per row error (key, class, text) of a committed shard, beside the
        failed shards."""
        lines = [
            json.dumps(
                {
                    "shard": shard_id,
                    "key": key,
                    "error_class": error_class,
                    "error": error,
                    "attempts": 1,
                }
            )
            for key, error_class, error in row_errors
        ]
        path = join(self.dir, ROW_ERRORS_DIR, f"{shard_id}.jsonl")
        write_atomically(self.fs, path, ("\n".join(lines) + "\n").encode())

    def row_errors(self) -> list[dict[str, Any]]:
        return self._read_records(ROW_ERRORS_DIR)

    def record_run(self, record: dict[str, Any]) -> None:
        """One file per run, written at its start and again at its end: a run that never
        wrote its end was killed. A file per run needs no read-modify-write."""
        path = join(self.dir, RUNS_DIR, f"{record['run']}.json")
        write_atomically(self.fs, path, json.dumps(record).encode())

    def runs(self) -> list[dict[str, Any]]:
        """The run history, oldest first."""
        return self._read_records(RUNS_DIR)

    def _read_records(self, directory: str) -> list[dict[str, Any]]:
        try:
            paths = sorted(self.fs.find(join(self.dir, directory), withdirs=False))
        except FileNotFoundError:
            return []
        contents = self.fs.cat(paths) if paths else {}
        return [
            json.loads(line)
            for path in paths
            for line in contents[path].decode().splitlines()
            if line.strip()
        ]
