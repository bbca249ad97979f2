"""Collect result rows per shard on the driver until a shard is complete or has failed."""

from __future__ import annotations

import time
from typing import Any

from pipeline.failures import Failure, FailureClass
from pipeline.run.page_assembly import merge_parts


class ShardAssembler:
    """Rows are keyed by their item's index in the shard and their part, so a row
    delivered twice (a retried Ray task) is stored once: exactly one output row per
    input item, made from all of its parts (`pipeline.run.page_assembly`)."""

    def __init__(self, shard_ids: set[str]):
        self.waiting = set(shard_ids)
        self.rows: dict[str, dict[int, dict[int, dict[str, Any]]]] = {}
        self.complete: dict[str, int] = {}  # items with all their parts, per shard
        self.failed: dict[str, Failure] = {}
        self.first_row_at: dict[str, float] = {}

    def add(self, row: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Take one row; returns the shard's output rows once all of them are here."""
        shard = row["shard"]
        if shard not in self.waiting:
            return None  # already committed or failed in this pass
        if row["shard_error_class"] is not None:
            kind = FailureClass(row["shard_error_class"])
            self.fail(shard, Failure(kind, row["shard_error"], bool(row["retryable"])))
            return None
        items = self.rows.setdefault(shard, {})
        self.first_row_at.setdefault(shard, time.monotonic())
        if row["index"] >= 0:
            parts = items.setdefault(row["index"], {})
            if row["part"] not in parts:
                parts[row["part"]] = row
                if len(parts) == max(row["parts"], 1):
                    self.complete[shard] = self.complete.get(shard, 0) + 1
        if self.complete.get(shard, 0) < row["shard_rows"]:
            return None
        self.waiting.discard(shard)
        self._forget(shard)
        return [merge_parts([parts[part] for part in sorted(parts)]) for parts in items.values()]

    def fail(self, shard: str, failure: Failure) -> None:
        self.waiting.discard(shard)
        self._forget(shard)
        self.failed[shard] = failure

    def _forget(self, shard: str) -> None:
        self.rows.pop(shard, None)
        self.complete.pop(shard, None)
        self.first_row_at.pop(shard, None)  # no longer in flight

    def fail_unfinished(self, kind: FailureClass, reason: str) -> None:
        """Shards still waiting when a pass ends or is cancelled: retry them."""
        for shard in sorted(self.waiting):
            got = self.complete.get(shard, 0)
            self.fail(shard, Failure(kind, f"{reason} ({got} rows arrived)", retryable=True))

    def slow_shards(self, older_than_s: float) -> list[str]:
        """Shards whose first row came long ago but that are still not complete."""
        now = time.monotonic()
        return sorted(s for s, t in self.first_row_at.items() if now - t > older_than_s)
