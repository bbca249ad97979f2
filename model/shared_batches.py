"""One model, several callers: the rows of concurrent calls are generated together.

A generation actor serves several blocks at once (one thread each). Each block's rows
wait in one queue; whichever caller finds the model idle takes up to `batch_size` rows,
oldest first and across blocks, runs one model call, and hands each block its
predictions. A block returns as soon as its own rows are done, so small shards fill the
batches of large ones and a slow block holds back no other. Nothing waits to gather:
a batch is whatever is queued when the model frees up.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Predict = Callable[[np.ndarray, Sequence[int]], list[Any]]


@dataclass
class _Request:
    pixels: np.ndarray
    seeds: list[int]
    results: list[Any] = field(default_factory=list)
    taken: int = 0  # rows handed to a model call so far
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or len(self.results) == len(self.pixels)


class SharedBatches:
    """`run(pixels, seeds)` from any number of threads; at most one model call at a time,
    each of at most `batch_size` rows (a callable: auto batch sizes are known late)."""

    def __init__(self, predict: Predict, batch_size: Callable[[], int]):
        self._predict = predict
        self._batch_size = batch_size
        self._queue: deque[_Request] = deque()
        self._busy = False
        self._changed = threading.Condition()
        self.calls = 0  # model calls so far
        self.rows = 0  # rows they held

    def run(self, pixels: np.ndarray, seeds: Sequence[int]) -> list[Any]:
        """Predictions for these rows, in order; raises what the model call raised."""
        request = _Request(pixels, list(seeds))
        with self._changed:
            self._queue.append(request)
            while not request.done:
                if self._busy:
                    self._changed.wait()
                    continue
                self._busy = True
                work = self._take()
                self._changed.release()
                try:
                    outcome: list[Any] | BaseException = self._call(work)
                except Exception as error:  # every block in this call gets it
                    outcome = error
                finally:
                    self._changed.acquire()
                self._hand_out(work, outcome)
                self._busy = False
                self._changed.notify_all()
        if request.error is not None:
            raise request.error
        return request.results

    def _take(self) -> list[tuple[_Request, int, int]]:
        """(request, start, stop) slices of queued rows, oldest first, up to a batch."""
        room, work = self._batch_size(), []
        while room and self._queue:
            request = self._queue[0]
            start = request.taken
            stop = min(len(request.pixels), start + room)
            work.append((request, start, stop))
            request.taken, room = stop, room - (stop - start)
            if stop == len(request.pixels):
                self._queue.popleft()
        return work

    def _call(self, work: list[tuple[_Request, int, int]]) -> list[Any]:
        pixels = np.concatenate([request.pixels[start:stop] for request, start, stop in work])
        seeds = [seed for request, start, stop in work for seed in request.seeds[start:stop]]
        self.calls += 1
        self.rows += len(pixels)
        return self._predict(pixels, seeds)

    def _hand_out(self, work: list[tuple[_Request, int, int]], outcome) -> None:
        offset = 0
        for request, start, stop in work:
            if isinstance(outcome, BaseException):
                request.error = outcome
                if request in self._queue:  # its other rows are not worth a model call
                    self._queue.remove(request)
                continue
            request.results += outcome[offset : offset + stop - start]
            offset += stop - start
