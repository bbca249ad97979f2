"""Character and word error rates of recognised text against references.

Both are corpus rates: total edit distance over total reference length, so long
lines weigh more than short ones, as in the usual OCR benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein


@dataclass
class ErrorCounts:
    """Edits and reference lengths summed over lines; adds up across workers."""

    char_edits: int = 0
    chars: int = 0
    word_edits: int = 0
    words: int = 0
    exact: int = 0
    lines: int = 0

    def add(self, predictions: Sequence[str], references: Sequence[str]) -> None:
        for predicted, reference in zip(predictions, references, strict=True):
            self.char_edits += Levenshtein.distance(predicted, reference)
            self.chars += len(reference)
            self.word_edits += Levenshtein.distance(predicted.split(), reference.split())
            self.words += len(reference.split())
            self.exact += predicted == reference
            self.lines += 1

    @property
    def cer(self) -> float:
        return self.char_edits / max(self.chars, 1)

    @property
    def wer(self) -> float:
        return self.word_edits / max(self.words, 1)

    @property
    def exact_match(self) -> float:
        return self.exact / max(self.lines, 1)


def cer(predictions: Sequence[str], references: Sequence[str]) -> float:
    counts = ErrorCounts()
    counts.add(predictions, references)
    return counts.cer


def wer(predictions: Sequence[str], references: Sequence[str]) -> float:
    counts = ErrorCounts()
    counts.add(predictions, references)
    return counts.wer
