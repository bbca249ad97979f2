"""Commits in flight: shards are written by a few threads, so one shard's Parquet write
and its rename or PUT hold up neither the next shard's commit nor the results coming
back. Each shard is still written whole, by one call, once."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

# A PUT to an object store is tens of milliseconds of waiting, not of CPU: a few threads
# overlap them. As many again may wait for a thread, so the driver holds the rows of at
# most 2 x COMMIT_THREADS assembled shards.
COMMIT_THREADS = 8


class CommitQueue:
    """Runs `commit(shard_id, rows)` in threads; `done` hands back the finished ones."""

    def __init__(self, commit: Callable[[str, list[dict]], Any], threads: int = COMMIT_THREADS):
        self.commit = commit
        self.limit = 2 * threads
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="commit")
        self.in_flight: dict[Future, str] = {}

    def submit(self, shard_id: str, rows: list[dict]) -> None:
        """Queue a shard's commit; waits while `limit` are unfinished (collect the
        finished ones with `done`)."""
        running = [future for future in self.in_flight if not future.done()]
        if len(running) >= self.limit:
            wait(running, return_when=FIRST_COMPLETED)
        self.in_flight[self.pool.submit(self.commit, shard_id, rows)] = shard_id

    def done(self, everything: bool = False) -> list[tuple[str, Future]]:
        """(shard id, future) of the commits that have finished; with `everything`, after
        waiting for all of them."""
        if everything:
            wait(self.in_flight)
        finished = [(shard, f) for f, shard in self.in_flight.items() if f.done()]
        for _, future in finished:
            del self.in_flight[future]
        return finished

    def shards(self) -> set[str]:
        return set(self.in_flight.values())

    def close(self) -> None:
        self.pool.shutdown(wait=True)
