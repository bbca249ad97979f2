"""The commit queue: every shard committed once, the driver holding at most a bounded
number of assembled shards, however many go through it."""

from __future__ import annotations

import threading
import time

from pipeline.run.commit_queue import CommitQueue


def test_every_shard_is_committed_once_and_at_most_the_limit_wait():
    committed: list[str] = []
    lock = threading.Lock()

    def commit(shard_id: str, rows: list[dict]) -> int:
        time.sleep(0.002)  # a rename or a PUT
        with lock:
            committed.append(shard_id)
        return len(rows)

    queue = CommitQueue(commit, threads=4)
    most_in_flight, settled = 0, {}
    for i in range(200):
        queue.submit(f"s{i}", [{}] * (i % 3))
        unfinished = sum(not future.done() for future in queue.in_flight)
        most_in_flight = max(most_in_flight, unfinished)
        settled |= {shard: future.result() for shard, future in queue.done()}
    settled |= {shard: future.result() for shard, future in queue.done(everything=True)}
    queue.close()
    assert sorted(committed) == sorted(f"s{i}" for i in range(200))
    assert settled == {f"s{i}": i % 3 for i in range(200)}
    assert most_in_flight <= 8 and queue.shards() == set()
