"""What went wrong with a shard or a row, as data: a class and a message.

The class decides what happens next (only transient classes are retried) and is
carried as its own field from the stage that saw the failure to the ledger; the
text a user reads, in the `error` column, the ledger and `status`, is
`"<class>: <message>"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class FailureClass(str, Enum):
    INPUT = "input"  # the input is bad: a corrupt shard, a row without an image
    DECODE = "decode"  # a row's image cannot become model input
    READ = "read"  # reading the shard failed some other way
    STORAGE = "storage"  # the store failed, reading or committing
    MODEL = "model"  # generation failed for a batch (out of memory, ...)
    MODEL_LOAD = "model_load"  # the actor cannot load the model: the run stops (exit 2)
    TIMEOUT = "timeout"  # nothing progressed for retry.shard_timeout_s
    LOST = "lost"  # rows were missing when a pass ended (Ray aborted it)


@dataclass(frozen=True)
class Failure:
    kind: FailureClass
    message: str
    retryable: bool = False

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"
