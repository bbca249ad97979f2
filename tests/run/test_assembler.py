"""The driver's assembler: rows kept once per index, and the slow-shard list names only
shards still in flight."""

from __future__ import annotations

from pipeline.failures import FailureClass
from pipeline.run.assembler import ShardAssembler


def _row(shard: str, index: int, rows: int) -> dict:
    return {"shard": shard, "index": index, "shard_rows": rows, "shard_error_class": None}


def test_a_committed_shard_leaves_the_slow_list_and_the_straggler_stays():
    assembler = ShardAssembler({"done", "straggler", "failed"})
    assert assembler.add(_row("done", 0, 1)) is not None
    assert assembler.add(_row("straggler", 0, 2)) is None
    assembler.add(_row("failed", 0, 3))
    assembler.fail_unfinished(FailureClass.LOST, "pass aborted")
    assert assembler.slow_shards(older_than_s=0) == []
    again = ShardAssembler({"done", "straggler"})
    again.add(_row("done", 0, 1))
    again.add(_row("straggler", 0, 2))
    assert again.slow_shards(older_than_s=0) == ["straggler"]


def test_a_row_delivered_twice_is_kept_once():
    assembler = ShardAssembler({"s"})
    assert assembler.add(_row("s", 0, 2)) is None
    assert assembler.add(_row("s", 0, 2)) is None  # a retried task's duplicate
    rows = assembler.add(_row("s", 1, 2))
    assert [row["index"] for row in rows] == [0, 1]
