"""Concurrent callers share model calls: full batches across callers, each caller's own
results in its own order, an error only for the callers whose rows it hit."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from model.shared_batches import SharedBatches, StaticEngine


def _slow_identity(calls: list[int], fail_on: int | None = None):
    def predict(pixels: np.ndarray, seeds) -> list[int]:
        calls.append(len(pixels))
        time.sleep(0.05)  # the model is busy: other callers queue up meanwhile
        if fail_on is not None and fail_on in pixels[:, 0]:
            raise RuntimeError("out of memory")
        return [int(row[0]) * 1000 + seed for row, seed in zip(pixels, seeds, strict=True)]

    return predict


def _shared(predict, batch_size: int) -> SharedBatches:
    return SharedBatches(StaticEngine(predict, lambda: batch_size))


def _rows(caller: int, count: int) -> tuple[np.ndarray, list[int]]:
    return np.full((count, 3), caller), list(range(count))


def test_small_blocks_fill_the_batch_and_each_gets_its_own_results():
    calls: list[int] = []
    batches = _shared(_slow_identity(calls), 16)
    with ThreadPoolExecutor(8) as pool:
        futures = {c: pool.submit(batches.run, *_rows(c, 5)) for c in range(8)}
    for caller, future in futures.items():
        assert future.result() == [caller * 1000 + i for i in range(5)]
    assert sum(calls) == 40 and max(calls) == 16
    assert len(calls) <= 4  # one alone first, then full batches of what queued meanwhile


def test_a_block_larger_than_the_batch_is_split():
    calls: list[int] = []
    batches = _shared(_slow_identity(calls), 4)
    assert batches.run(*_rows(7, 10)) == [7000 + i for i in range(10)]
    assert calls == [4, 4, 2]


def test_an_error_reaches_only_the_callers_in_that_call():
    calls: list[int] = []
    batches = _shared(_slow_identity(calls, fail_on=3), 2)
    with ThreadPoolExecutor(4) as pool:
        futures = {c: pool.submit(batches.run, *_rows(c, 2)) for c in range(4)}
    with pytest.raises(RuntimeError, match="out of memory"):
        futures[3].result()
    for caller in (0, 1, 2):
        assert futures[caller].result() == [caller * 1000, caller * 1000 + 1]


def test_no_rows_no_call():
    calls: list[int] = []
    assert _shared(_slow_identity(calls), 4).run(np.zeros((0, 3)), []) == []
    assert calls == []
