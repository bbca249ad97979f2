"""Word boxes inside a line box. The model gives a line's box and its text, not where each
word is: the line's box is shared among its characters in proportion to their advance
widths in Helvetica (Adobe's metrics, as fpdf2 ships them), the same widths the PDF text
layer is set in, so a word's box in hOCR and ALTO is where the PDF puts it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fpdf.fonts import CORE_FONTS_CHARWIDTHS

# Helvetica's widths (1/1000 em), keyed by the character's byte in Windows-1252.
HELVETICA = CORE_FONTS_CHARWIDTHS["helvetica"]
OTHER_ADVANCE = 556  # a character Helvetica lacks: as wide as its digits
WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Word:
    """A word and its box in page pixels (x1, y1 exclusive, as the line's)."""

    text: str
    x0: int
    y0: int
    x1: int
    y1: int


def advance(char: str) -> int:
    """`char`'s advance width in Helvetica, in 1/1000 em."""
    try:
        return HELVETICA[char.encode("cp1252").decode("latin-1")]
    except UnicodeEncodeError:
        return OTHER_ADVANCE


def line_confidence(line: dict) -> float | None:
    """How sure the model was of a line, 0 to 1: its score (the mean log-probability of
    its tokens, when the run scored: --score) as a probability, the geometric mean of its
    tokens'. Its words share it: the model scores lines, not words."""
    score = line.get("score")
    return None if score is None else min(1.0, math.exp(score))


def split_words(line: dict) -> list[Word]:
    """The line's whitespace-separated words, left to right, each with its share of the
    line's box: the box spans the text from its first to its last visible character."""
    text = line["text"] or ""
    found = list(WORD.finditer(text))
    if not found:
        return []
    start = found[0].start()
    edges = [0]  # the advance before each character of the span, and after the last
    for char in text[start : found[-1].end()]:
        edges.append(edges[-1] + advance(char))
    x0, x1 = line["x0"], line["x1"]
    scale = (x1 - x0) / edges[-1]
    return [
        Word(
            match.group(),
            x0 + round(edges[match.start() - start] * scale),
            line["y0"],
            x0 + round(edges[match.end() - start] * scale),
            line["y1"],
        )
        for match in found
    ]
