"""The generation stage: a Ray actor that holds the model and reads the rows the CPU
tasks (`pipeline.run.reading`) prepared, with one engine (static batches or continuous
batching, `model.continuous`) fed by every block it serves at once
(`model.shared_batches`)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import pyarrow as pa
import torch

from model import (
    GenerationSettings,
    ModelLoadError,
    ModelSettings,
    TextGenerator,
    load_model,
    row_seed,
)
from model.batching import auto_batch_size
from model.choices import ChoiceScorer
from model.continuous import engine_for
from model.engine_stats import StatsCounter
from model.settings import LabelSettings
from model.shared_batches import SharedBatches
from pipeline.failures import FailureClass
from pipeline.run.rows import COMMON_NAMES, LABEL_NAMES, RESULT_SCHEMA, needs_model

log = logging.getLogger(__name__)


class GenerationStage:
    """Ray actor stage: the model is loaded once per actor, then batched generate (or, in
    choices mode, batched scoring of the given labels)."""

    def __init__(
        self,
        model_settings: ModelSettings,
        generation: GenerationSettings,
        label: LabelSettings,
        torch_threads: int | None,
        batch_size: int | Literal["auto"],
        batching: Literal["auto", "continuous", "static"] = "auto",
    ):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        # Every torch call of the model runs on this one thread (`model.shared_batches`).
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.load_error: str | None = None
        self.stats: StatsCounter | None = None  # what the model computed (model.engine_stats)
        try:
            loaded = self.model_thread.submit(_load, model_settings, torch_threads).result()
        except ModelLoadError as error:
            # Reported as data on every row, so the driver stops with this message; an
            # exception here would reach it only as the text of Ray's actor death.
            self.load_error = str(error)
            return
        self.predictor = (
            TextGenerator(loaded, generation, score=label.score)
            if label.choices is None
            else ChoiceScorer(loaded, label.choices, generation.prompt)
        )
        self.seed = generation.seed
        self.batch_size = batch_size  # "auto": sized on the first batch
        self._sizing = threading.Lock()
        self.stats = getattr(self.predictor, "stats", None)  # choices mode keeps none
        # The blocks this actor serves at once (`plan.BLOCKS_PER_ACTOR`) share one engine.
        engine = engine_for(self.predictor, batching, lambda: self.batch_size)
        self.batches = SharedBatches(engine, self.model_thread)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        columns = {name: list(batch[name]) for name in COMMON_NAMES}
        values = zip(*columns.values(), strict=True)
        rows = [dict(zip(columns, row, strict=True)) for row in values]
        n = len(rows)
        results: dict[str, list] = {name: [None] * n for name in ("text", *LABEL_NAMES)}
        for i, row in enumerate(rows):  # text a PDF's text layer gave, pages without lines
            if row["given_text"] is not None or row["parts"] == 0:
                results["text"][i] = row["given_text"] or ""
        todo = [i for i, row in enumerate(rows) if needs_model(row)]
        if self.load_error is not None:
            columns["shard_error"] = [self.load_error] * n
            columns["shard_error_class"] = [FailureClass.MODEL_LOAD.value] * n
            todo = []
        if todo:
            seeds = [row_seed(self.seed, rows[i]["shard"], rows[i]["key"]) for i in todo]
            pixels = batch["pixel_values"][todo]
            if self.stats is not None:
                self.stats.add(images=len(pixels), pixel_bytes=pixels.nbytes)
            try:
                self._size_batches(pixels)
                predictions = self.batches.run(pixels, seeds)
                for i, prediction in zip(todo, predictions, strict=True):
                    for name, column in results.items():
                        column[i] = getattr(prediction, name)
            except Exception as error:  # e.g. out of memory: retry the shards, not the job
                log.exception("generation failed for a batch")
                message = f"{type(error).__name__}: {error}"
                for i in todo:
                    columns["shard_error"][i] = message
                    columns["shard_error_class"][i] = FailureClass.MODEL.value
                    columns["retryable"][i] = True
        stats = [None] * n
        if self.stats is not None and n:
            stats[0] = self.stats.take().as_dict()
        return pa.Table.from_pydict(
            columns | results | {"engine_stats": stats}, schema=RESULT_SCHEMA
        )

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
                log.info("batch size auto: %d images per generate call", self.batch_size)


def _load(settings: ModelSettings, torch_threads: int | None):
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    return load_model(settings)
