"""The generation stage: a Ray actor that holds the model (`model.serving`) and reads
the rows the CPU tasks (`pipeline.run.reading`) prepared. Every block it serves at once
feeds the same engine: static batches or continuous batching (`model.continuous`)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import pyarrow as pa

from model.load_error import ModelLoadError
from model.settings import row_seed
from pipeline.failures import FailureClass
from pipeline.run.rows import (
    ACTOR_STARTUP_STEPS,
    COMMON_NAMES,
    LABEL_NAMES,
    RESULT_SCHEMA,
    needs_model,
)

log = logging.getLogger(__name__)


class GenerationStage:
    """Ray actor stage: the model is loaded once per actor, then generation (or, in
    choices mode, scoring of the given labels) for the rows of every block it serves."""

    def __init__(self, **server_args: Any):
        """server_args: `model.serving.ModelServer`'s, which this stage passes on."""
        # When each start-up step ended, sent back once with the first rows (then None).
        self.startup: dict[str, float] | None = {"actor_started": time.time()}
        self._startup_sent = threading.Lock()
        # Here, not at the top: the driver imports this module to hand Ray the class and
        # starts faster without torch and the model code, which only the actor needs.
        from transformers.utils import logging as hf_logging

        from model.serving import ModelServer

        self.startup["model_imported"] = time.time()
        hf_logging.disable_progress_bar()
        self.seed = server_args["generation"].seed
        self.load_error: str | None = None
        self.server: ModelServer | None = None
        try:
            self.server = ModelServer(**server_args)
            self.startup["model_loaded"] = time.time()
        except ModelLoadError as error:
            # Reported as data on every row, so the driver stops with this message; an
            # exception here would reach it only as the text of Ray's actor death.
            self.load_error = str(error)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        steps = self.startup
        if steps is not None:
            steps.setdefault("first_read", time.time())
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
            try:
                predictions = self.server.predict(pixels, seeds)
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
        stats, startup = [None] * n, [None] * n  # on the block's first row only
        if n:
            taken = self.server.take_stats() if self.server is not None else None
            stats[0] = taken and taken.as_dict()
            startup[0] = self._take_startup()
        return pa.Table.from_pydict(
            columns | results | {"engine_stats": stats, "actor_startup": startup},
            schema=RESULT_SCHEMA,
        )

    def _take_startup(self) -> dict[str, float | None] | None:
        """The start-up times, for the first block this actor returns; then None."""
        with self._startup_sent:
            if self.startup is None:
                return None
            startup, self.startup = self.startup, None
        startup.setdefault("first_generated", time.time())
        return {step: startup.get(step) for step in ACTOR_STARTUP_STEPS}
