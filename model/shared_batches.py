"""One model, several callers: the rows of concurrent calls are generated together.

A generation actor serves several blocks at once (one thread each). Each block's rows
wait in one queue; the model's thread takes turns: it admits queued rows, oldest first
and across blocks, as far as the engine has room, runs one engine step, and hands each
block the rows that ended. A block returns as soon as its own rows are done, so small
shards fill the batches of large ones and a slow block holds back no other. Nothing
waits to gather: a turn takes whatever is queued.

The engine is static (`StaticEngine`: one `generate` call over the rows admitted, all of
which end with it) or continuous (`model.continuous.ContinuousEngine`: rows end one by
one and new ones take their place).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

Predict = Callable[[np.ndarray, Sequence[int]], list[Any]]
Ended = list[tuple[Any, Any]]  # (tag, prediction) of the rows a call ended


class Engine(Protocol):
    live: int  # rows admitted and not yet ended

    def room(self) -> int:
        """How many rows to admit now."""

    def admit(self, pixels: np.ndarray, seeds: Sequence[int], tags: Sequence[Any]) -> Ended:
        """Take these rows in."""

    def step(self) -> Ended:
        """Compute; return the rows that ended."""

    def drop(self) -> list[Any]:
        """After a failed call: forget every row, returning their tags."""


class StaticEngine:
    """One model call (`predict`, e.g. `TextGenerator.predict`) over the rows admitted
    since the last step, at most `batch_size` of them."""

    def __init__(self, predict: Predict, batch_size: Callable[[], int]):
        self._predict = predict
        self._batch_size = batch_size
        self._held: list[tuple[np.ndarray, int, Any]] = []

    @property
    def live(self) -> int:
        return len(self._held)

    def room(self) -> int:
        return self._batch_size() - len(self._held)

    def admit(self, pixels: np.ndarray, seeds: Sequence[int], tags: Sequence[Any]) -> Ended:
        self._held += zip(pixels, seeds, tags, strict=True)
        return []

    def step(self) -> Ended:
        held, self._held = self._held, []
        pixels = np.stack([pixels for pixels, _, _ in held])
        predictions = self._predict(pixels, [seed for _, seed, _ in held])
        return [(tag, p) for (_, _, tag), p in zip(held, predictions, strict=True)]

    def drop(self) -> list[Any]:
        tags = [tag for _, _, tag in self._held]
        self._held = []
        return tags


@dataclass(eq=False)
class _Request:
    pixels: np.ndarray
    seeds: list[int]
    wake: threading.Condition  # its caller waits on it for its rows
    results: list[Any] = field(default_factory=list)
    left: int = 0  # rows not yet ended
    taken: int = 0  # rows admitted so far
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.results = [None] * len(self.pixels)
        self.left = len(self.pixels)

    @property
    def done(self) -> bool:
        return self.error is not None or self.left == 0


class SharedBatches:
    """`run(pixels, seeds)` from any number of threads; the engine's turns run one after
    another on `model_thread`, the one thread that runs every torch call of the model.

    One thread because torch's OpenMP keeps a team of threads per calling thread: with a
    second team in the process (the caller's, or the thread that loaded the model), the
    workers stop spinning between the many small parallel regions of a decode step, and
    the continuous engine ran at half speed on 2 cores. A caller sleeps until its rows
    are done."""

    def __init__(self, engine: Engine, model_thread: Executor | None = None):
        self.engine = engine
        self._model_thread = model_thread or ThreadPoolExecutor(1, thread_name_prefix="model")
        self._lock = threading.Lock()
        self._queue: deque[_Request] = deque()  # rows not yet admitted
        self._scheduled = False  # a turn is queued or running on the model thread

    def run(self, pixels: np.ndarray, seeds: Sequence[int]) -> list[Any]:
        """Predictions for these rows, in order; raises what the engine raised."""
        if not len(pixels):
            return []
        request = _Request(pixels, list(seeds), threading.Condition(self._lock))
        with self._lock:
            self._queue.append(request)
            self._schedule()
            while not request.done:
                request.wake.wait()
        if request.error is not None:
            raise request.error
        return request.results

    def _schedule(self) -> None:
        """With the lock held: queue the next turn if there is work and none is queued."""
        if not self._scheduled and (self._queue or self.engine.live):
            self._scheduled = True
            self._model_thread.submit(self._next_turn)

    def _next_turn(self) -> None:
        with self._lock:
            work = self._take()
        try:
            outcome: Ended | BaseException = self._turn(work)
        except Exception as error:  # every row in the engine gets it
            outcome = error
        with self._lock:
            self._hand_out(work, outcome)
            self._scheduled = False
            self._schedule()

    def _take(self) -> list[tuple[_Request, int, int]]:
        """(request, start, stop) slices of queued rows, oldest first, as far as the
        engine has room."""
        room, work = self.engine.room(), []
        while room > 0 and self._queue:
            request = self._queue[0]
            start = request.taken
            stop = min(len(request.pixels), start + room)
            work.append((request, start, stop))
            request.taken, room = stop, room - (stop - start)
            if stop == len(request.pixels):
                self._queue.popleft()
        return work

    def _turn(self, work: list[tuple[_Request, int, int]]) -> Ended:
        ended: Ended = []
        if work:
            pixels = np.concatenate([request.pixels[start:stop] for request, start, stop in work])
            seeds = [seed for request, start, stop in work for seed in request.seeds[start:stop]]
            tags = [(request, i) for request, start, stop in work for i in range(start, stop)]
            ended += self.engine.admit(pixels, seeds, tags)
        if self.engine.live:
            ended += self.engine.step()
        return ended

    def _hand_out(self, work: list[tuple[_Request, int, int]], outcome) -> None:
        """Results (or the error) to their callers; the callers now done are woken."""
        if isinstance(outcome, BaseException):
            hit = {request for request, _ in self.engine.drop()}
            hit |= {request for request, _, _ in work}
            for request in hit:
                request.error = outcome
                if request in self._queue:  # its other rows are not worth a model call
                    self._queue.remove(request)
                request.wake.notify()
            return
        for (request, i), prediction in outcome:
            request.results[i] = prediction
            request.left -= 1
            if request.left == 0:
                request.wake.notify()
