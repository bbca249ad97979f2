"""Collect result rows per shard on the driver until a shard is complete or has failed."""

from __future__ import annotations

import time
from typing import Any

from pipeline.failures import Failure, FailureClass


class ShardAssembler:
    """Rows are keyed by their index in the shard, so a row delivered twice (a retried
    Ray task) is stored once: exactly one output row per input image."""

    def __init__(self, shard_ids: set[str]):
        self.waiting = set(shard_ids)
        self.rows: dict[str, dict[int, dict[str, Any]]] = {}
        self.failed: dict[str, Failure] = {}
        self.first_row_at: dict[str, float] = {}

    def add(self, row: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Take one row; returns the shard's rows once all of them are here."""
        shard = row["shard"]
        if shard not in self.waiting:
            return None  # already committed or failed in this pass
        if row["shard_error_class"] is not None:
            kind = FailureClass(row["shard_error_class"])
            self.fail(shard, Failure(kind, row["shard_error"], bool(row["retryable"])))
            return None
        rows = self.rows.setdefault(shard, {})
        self.first_row_at.setdefault(shard, time.monotonic())
        if row["index"] >= 0:
            rows[row["index"]] = row
        if len(rows) < row["shard_rows"]:
            return None
        self.waiting.discard(shard)
        self.first_row_at.pop(shard, None)  # complete: no longer in flight
        return list(self.rows.pop(shard).values())

    def fail(self, shard: str, failure: Failure) -> None:
        self.waiting.discard(shard)
        self.rows.pop(shard, None)
        self.first_row_at.pop(shard, None)
        self.failed[shard] = failure

    def fail_unfinished(self, kind: FailureClass, reason: str) -> None:
        """Shards still waiting when a pass ends or is cancelled: retry them."""
        for shard in sorted(self.waiting):
            got = len(self.rows.get(shard, {}))
            self.fail(shard, Failure(kind, f"{reason} ({got} rows arrived)", retryable=True))

    def slow_shards(self, older_than_s: float) -> list[str]:
        """Shards whose first row came long ago but that are still not complete."""
        now = time.monotonic()
        return sorted(s for s, t in self.first_row_at.items() if now - t > older_than_s)
