"""Collect result rows per shard on the driver until a shard is complete or has failed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ShardFailure:
    error: str
    retryable: bool


class ShardAssembler:
    """Rows are keyed by their index in the shard, so a row delivered twice (a retried
    Ray task) is stored once: exactly one output row per input image."""

    def __init__(self, shard_ids: set[str]):
        self.waiting = set(shard_ids)
        self.rows: dict[str, dict[int, dict[str, Any]]] = {}
        self.failed: dict[str, ShardFailure] = {}

    def add(self, row: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Take one row; returns the shard's rows once all of them are here."""
        shard = row["shard"]
        if shard not in self.waiting:
            return None  # already committed or failed in this pass
        if row["shard_error"] is not None:
            self.fail(shard, ShardFailure(row["shard_error"], bool(row["retryable"])))
            return None
        rows = self.rows.setdefault(shard, {})
        if row["index"] >= 0:
            rows[row["index"]] = row
        if len(rows) < row["shard_rows"]:
            return None
        self.waiting.discard(shard)
        return list(self.rows.pop(shard).values())

    def fail(self, shard: str, failure: ShardFailure) -> None:
        self.waiting.discard(shard)
        self.rows.pop(shard, None)
        self.failed[shard] = failure

    def fail_unfinished(self, reason: str) -> None:
        """At the end of a pass, shards still waiting lost rows somewhere: retry them."""
        for shard in sorted(self.waiting):
            got = len(self.rows.get(shard, {}))
            self.fail(shard, ShardFailure(f"incomplete: {reason} ({got} rows arrived)", True))
