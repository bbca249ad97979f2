"""How shards become read tasks: small ones share a task, a large one keeps its own."""

from __future__ import annotations

from pipeline.inputs.shards import Shard
from pipeline.run.plan import TASK_BYTES, TASK_SHARDS, pack_shards

FEW_TASKS = 1  # no lower bound on the number of tasks


def _shards(*sizes: int) -> list[Shard]:
    return [
        Shard(f"s{i}", "webdataset", (f"s{i}.tar",), "in", size) for i, size in enumerate(sizes)
    ]


def test_small_shards_share_tasks_in_order_and_each_is_in_exactly_one():
    shards = _shards(*[1000] * (2 * TASK_SHARDS + 3))
    groups = list(pack_shards(shards, FEW_TASKS))
    assert [len(group) for group in groups] == [TASK_SHARDS, TASK_SHARDS, 3]
    assert [shard for group in groups for shard in group] == shards


def test_a_large_shard_keeps_a_task_of_its_own():
    shards = _shards(10, TASK_BYTES, 10, 10, TASK_BYTES // 2, TASK_BYTES // 2 + 1)
    sizes = [[shard.size for shard in group] for group in pack_shards(shards, FEW_TASKS)]
    assert sizes == [[10], [TASK_BYTES], [10, 10, TASK_BYTES // 2], [TASK_BYTES // 2 + 1]]


def test_few_shards_keep_a_task_each_so_the_cluster_gets_them_all():
    shards = _shards(*[10] * 20)
    assert [len(group) for group in pack_shards(shards, least_tasks=8)] == [2] * 10
    assert [len(group) for group in pack_shards(shards[:6], least_tasks=8)] == [1] * 6
