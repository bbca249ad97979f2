"""Each row of a decoder call at its own positions: what lets rows of different lengths
share a call and a cache (the continuous engine's rows, checked drafts' rows)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import GPT2LMHeadModel


class RowPositions:
    """Hands each row its own positions in a decoder call: the `position_ids` GPT-2 takes,
    or, for decoders that count positions from the cache's length (TrOCR and MBart with
    learned positions), the output of their position-embedding module replaced for the
    call by the rows' own. TrOCR's sinusoidal variant is not known here."""

    def __init__(self, decoder: nn.Module):
        self.as_argument = isinstance(decoder, GPT2LMHeadModel)
        self.module = None
        if not self.as_argument:
            found = [m for name, m in decoder.named_modules() if name.endswith("embed_positions")]
            if len(found) != 1 or not _learned(found[0]):
                kind = type(decoder).__name__
                raise TypeError(f"the engine does not know how {kind} positions its tokens")
            self.module = found[0]

    @contextmanager
    def at(self, positions: torch.Tensor) -> Iterator[dict[str, torch.Tensor]]:
        """Within the block the decoder sees `positions`, (rows,) or (rows, tokens);
        yields the keyword arguments the decoder call needs for it."""
        if positions.dim() == 1:
            positions = positions[:, None]
        if self.module is None:
            yield {"position_ids": positions}
            return
        embedded = self._embed(positions)
        # Stand in for the module's own lookup, which counts from the cache's length: a
        # cache with padded or voided slots is longer than any row's text, and its
        # positions may run past the table.
        self.module.forward = lambda *args, **kwargs: embedded
        try:
            yield {}
        finally:
            del self.module.forward

    def _embed(self, positions: torch.Tensor) -> torch.Tensor:
        """The rows the module itself would look up for these positions."""
        return nn.functional.embedding(positions + self.module.offset, self.module.weight)


def _learned(module: nn.Module) -> bool:
    """A learned position table offset by 2 (TrOCR's and MBart's)."""
    return isinstance(module, nn.Embedding) and hasattr(module, "offset")
