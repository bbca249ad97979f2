"""Invisible text over pages, the way Tesseract and OCRmyPDF make a PDF searchable: each
line in text render mode 3 (neither fill nor stroke), its font size the line box's
height, stretched (Tz) to the box's width, so a viewer selects and finds the words where
they are printed while nothing shown changes. fpdf2 writes the pages; the font, made with
fontTools for the characters of one shard, has an empty glyph for each of them with
Helvetica's advance width (`words.advance`), so the words fall where hOCR and ALTO put
them, and any script extracts as its own Unicode text."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fpdf import FPDF
from fpdf.enums import TextMode

from pipeline.export.geometry import POINTS_PER_INCH
from pipeline.export.words import advance

logging.getLogger("fontTools").setLevel(logging.WARNING)  # a line per table it subsets
FONT = "glyphless"
EM = 1000
ASCENT, DESCENT = 800, -200  # a line box is one em high, its baseline a fifth from the bottom
EPOCH = 2082844800  # 1970-01-01 in the font's clock (seconds since 1904)


def write_glyphless_font(chars: Iterable[str], path: Path) -> None:
    """A TrueType font mapping each of `chars` to an empty glyph of its Helvetica width."""
    names = {ord(char): f"u{ord(char):06X}" for char in sorted(set(chars) | {" "})}
    order = [".notdef", *names.values()]
    builder = FontBuilder(EM, isTTF=True)
    # No clock in the file, glyphs in code point order: the same characters make the same
    # font, and the same output the same PDF.
    builder.updateHead(created=EPOCH, modified=EPOCH)
    builder.font.recalcTimestamp = False
    builder.setupGlyphOrder(order)
    builder.setupCharacterMap(names)
    empty = TTGlyphPen(None).glyph()
    builder.setupGlyf(dict.fromkeys(order, empty))
    widths = {name: (advance(chr(code)), 0) for code, name in names.items()}
    builder.setupHorizontalMetrics({".notdef": (EM // 2, 0), **widths})
    builder.setupHorizontalHeader(ascent=ASCENT, descent=DESCENT)
    builder.setupNameTable({"familyName": "GlyphLess", "styleName": "Regular"})
    builder.setupOS2(
        sTypoAscender=ASCENT, sTypoDescender=DESCENT, usWinAscent=ASCENT, usWinDescent=-DESCENT
    )
    builder.setupPost()
    builder.save(str(path))


class TextPages:
    """An fpdf2 document of pages holding a shard's lines as invisible text, each to be
    laid over the page it was read from."""

    def __init__(self, pdf: FPDF):
        self.pdf = pdf

    def add_page(
        self,
        size: tuple[float, float],
        lines: list[dict],
        dpi: int,
    ) -> None:
        """A page `size` points wide and high; `lines` boxes are pixels at `dpi` from its
        top left corner."""
        self.pdf.add_page(format=size)
        for line in lines:
            self._line(line, POINTS_PER_INCH / dpi)

    def _line(self, line: dict, scale: float) -> None:
        text = (line["text"] or "").strip()
        x0, y0, x1, y1 = (line[name] * scale for name in ("x0", "y0", "x1", "y1"))
        if not text or x1 <= x0 or y1 <= y0:
            return
        self.pdf.set_font_size(y1 - y0)
        self.pdf.set_stretching(100)  # the width below is measured unstretched
        self.pdf.set_stretching(100 * (x1 - x0) / self.pdf.get_string_width(text))
        self.pdf.text(x0, y0 + (y1 - y0) * ASCENT / EM, text)

    def output(self) -> bytes:
        return bytes(self.pdf.output())


@contextmanager
def text_pages(chars: Iterable[str]) -> Iterator[TextPages]:
    """A TextPages whose font covers `chars`; the font file lives as long as the block."""
    with tempfile.TemporaryDirectory(prefix="shardscribe-font-") as scratch:
        path = Path(scratch) / f"{FONT}.ttf"
        write_glyphless_font(chars, path)
        pdf = FPDF(unit="pt")
        pdf.set_auto_page_break(False)
        pdf.set_margins(0, 0)
        pdf.add_font(FONT, fname=path)
        pdf.set_font(FONT)
        pdf.text_mode = TextMode.INVISIBLE
        yield TextPages(pdf)
