"""One process's model, served to concurrent callers: loaded on a thread of its own, the
one thread that runs every torch call of it, with the engine that `batching` picks
(`model.continuous.engine_for`) fed by every caller at once (`model.shared_batches`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import torch

from model.batching import auto_batch_size
from model.choices import ChoiceScorer
from model.continuous import engine_for
from model.engine_stats import EngineStats
from model.generation import TextGenerator
from model.loading import load_model
from model.settings import GenerationSettings, LabelSettings, ModelSettings
from model.shared_batches import SharedBatches

log = logging.getLogger(__name__)


class ModelServer:
    """Raises ModelLoadError when the model does not load."""

    def __init__(
        self,
        model_settings: ModelSettings,
        generation: GenerationSettings,
        label: LabelSettings,
        torch_threads: int | None,
        batch_size: int | Literal["auto"],
        batching: Literal["auto", "continuous", "static"],
    ):
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        loaded = self.model_thread.submit(_load, model_settings, torch_threads).result()
        self.predictor = (
            TextGenerator(loaded, generation, score=label.score)
            if label.choices is None
            else ChoiceScorer(loaded, label.choices, generation.prompt)
        )
        self.batch_size = batch_size  # "auto": sized on the first rows
        self._sizing = threading.Lock()
        self._stats = getattr(self.predictor, "stats", None)  # choices mode keeps none
        engine = engine_for(self.predictor, batching, lambda: self.batch_size)
        self.batches = SharedBatches(engine, self.model_thread)

    def predict(self, pixels: np.ndarray, seeds: Sequence[int]) -> list[Any]:
        """Predictions for these rows, in order, whoever else is calling."""
        if self._stats is not None:
            self._stats.add(images=len(pixels), pixel_bytes=pixels.nbytes)
        self._size_batches(pixels)
        return self.batches.run(pixels, seeds)

    def take_stats(self) -> EngineStats | None:
        """What the model computed since the last call (None in choices mode)."""
        return self._stats.take() if self._stats is not None else None

    def _size_batches(self, pixels: np.ndarray) -> None:
        """An auto batch size is measured on the first rows, once."""
        with self._sizing:
            if self.batch_size == "auto":
                probe = pixels[:1]
                sizing = self.model_thread.submit(
                    auto_batch_size,
                    self.predictor.loaded.device,
                    lambda: self.predictor.predict(probe, [0]),
                )
                self.batch_size = sizing.result()
                log.info("batch size auto: %d images per model call", self.batch_size)


def _load(settings: ModelSettings, torch_threads: int | None):
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    return load_model(settings)
