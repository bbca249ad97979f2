"""PDF shards: one file is one shard, each page one row, rendered with pdfium
(pypdfium2) one page at a time, when its row is reached.

A page is an image to read, or the text it holds of its own (its text layer), with the
boxes pdfium gives its text runs, where `input.pdf_text_layer` takes it: text the
document draws (a born-digital page) under `auto` and `prefer`, an earlier OCR's
invisible layer over a scan only under `prefer` (`auto` reads that page again).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Literal

import pyarrow as pa
import pypdf
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from model.images import ImageDecodeError
from pipeline.exceptions import ShardReadError
from pipeline.job_config import TextLayerUse

POINTS_PER_INCH = 72
OwnText = Literal["visible", "invisible", "none"]
INVISIBLE_MODES = (  # text render modes that paint nothing: an OCR layer's
    pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE,
    pdfium_c.FPDF_TEXTRENDERMODE_CLIP,
)
TEXT_SOURCE_PDF, TEXT_SOURCE_OCR_LAYER = "pdf", "ocr_layer"
logging.getLogger("pypdf").setLevel(logging.ERROR)  # its notes on damaged files: ours say it


def page_key(index: int) -> str:
    """The row key of the page at 0-based `index`: page-0001, page-0002, ..."""
    return f"page-{index + 1:04d}"


@dataclass(frozen=True)
class TextLayer:
    """A page's own text, and its text runs as (x0, y0, x1, y1) boxes in the pixels the
    page renders to, with their text, top to bottom. `source`: the row's text_source,
    "pdf" for text the document draws, "ocr_layer" for an earlier OCR's invisible text."""

    text: str
    runs: list[tuple[tuple[int, int, int, int], str]]
    source: str = TEXT_SOURCE_PDF


class PdfPages(Sequence):
    """The pages of one PDF, from a file opened on storage (which they close); `pages[i]`
    renders page i (or returns its text layer, as `text_layer` says) when asked, so a
    long PDF is never rendered whole (its bytes are held whole only up to
    `storage.WHOLE_READ_BYTES`). Errors opening the file are the shard's
    (ShardReadError); a page's are its row's (ImageDecodeError). `prefer_text_layer`:
    the older switch (True is "prefer", False "ignore"), for callers that pass it."""

    def __init__(
        self,
        file: BinaryIO,
        dpi: int,
        max_pixels: int | None,
        prefer_text_layer: bool | None = None,
        text_layer: TextLayerUse = "ignore",
    ):
        if prefer_text_layer is not None:
            text_layer = "prefer" if prefer_text_layer else "ignore"
        self.dpi, self.max_pixels, self.text_layer = dpi, max_pixels, text_layer
        self.scale = dpi / POINTS_PER_INCH  # pixels per PDF point
        self._file = file
        self._document: pdfium.PdfDocument | None = None
        try:
            self._document = pdfium.PdfDocument(self._file)
        except pdfium.PdfiumError:
            problem = _problem(self._file)
            self._file.close()
            if problem is not None:  # else a valid PDF without pages: no rows
                raise ShardReadError(f"cannot open the PDF: {problem}") from None

    def __len__(self) -> int:
        return len(self._document) if self._document is not None else 0

    def close(self) -> None:
        if self._document is not None:
            self._document.close()
        self._file.close()

    def passthrough(self) -> pa.Table:
        """The `page` column: 1-based page numbers."""
        return pa.table({"page": pa.array(range(1, len(self) + 1), pa.int32())})

    def __getitem__(self, index: int) -> Image.Image | TextLayer:  # type: ignore[override]
        if self._document is None:
            raise IndexError(index)
        try:
            page = self._document[index]
        except pdfium.PdfiumError as error:
            raise ImageDecodeError(f"cannot load PDF page {index + 1}: {error}") from None
        try:
            if self.text_layer != "ignore":
                layer = _text_layer(page, self.scale)
                if layer is not None and (self.text_layer == "prefer" or layer.source == "pdf"):
                    return layer
            return self._render(page, index)
        finally:
            page.close()

    def _render(self, page: pdfium.PdfPage, index: int) -> Image.Image:
        width, height = (round(side * self.scale) for side in page.get_size())
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise ImageDecodeError(
                f"page {index + 1} at {self.dpi} dpi is {width}x{height} px, over "
                f"input.max_image_pixels ({self.max_pixels}); lower input.pdf_dpi"
            )
        try:
            return page.render(scale=self.scale, grayscale=True).to_pil().convert("RGB")
        except pdfium.PdfiumError as error:
            raise ImageDecodeError(f"cannot render PDF page {index + 1}: {error}") from None


def _problem(file: BinaryIO) -> str | None:
    """Why pdfium refused the file, or None for a valid PDF without pages (which pdfium
    refuses too). pdfium's error code is process-wide and may be left over from another
    file, so pypdf reads the file again to tell."""
    file.seek(0)
    try:
        reader = pypdf.PdfReader(file)
        if reader.is_encrypted:
            return "it is encrypted and needs a password"
        if len(reader.pages) == 0:
            return None
        reason = "pdfium cannot load it"
    except Exception as error:  # pypdf raises many types for damaged files
        reason = f"{type(error).__name__}: {error}"
    return f"not a readable PDF ({reason})"


def own_text(textpage: pdfium.PdfTextPage) -> OwnText:
    """What text a page holds of its own: "visible" when most of its characters are drawn
    (a born-digital page, or a scan with printed text added), "invisible" when most are
    in a render mode that paints nothing (the layer an earlier OCR laid over a scan),
    "none" when it has no characters but spaces."""
    visible = invisible = 0
    for index in range(textpage.count_chars()):
        char = pdfium_c.FPDFText_GetUnicode(textpage, index)
        text_object = pdfium_c.FPDFText_GetTextObject(textpage, index)
        if not text_object or chr(char).isspace():  # spaces and breaks pdfium adds
            continue
        if pdfium_c.FPDFTextObj_GetTextRenderMode(text_object) in INVISIBLE_MODES:
            invisible += 1
        else:
            visible += 1
    if not visible + invisible:
        return "none"
    return "visible" if visible >= invisible else "invisible"


def page_own_text(page: pdfium.PdfPage) -> OwnText:
    """`own_text` of a page."""
    textpage = page.get_textpage()
    try:
        return own_text(textpage)
    finally:
        textpage.close()


def _text_layer(page: pdfium.PdfPage, scale: float) -> TextLayer | None:
    """The page's text layer when it is usable: some letters or digits, and at most one
    character in ten unprintable (a text layer of unmapped glyphs reads as garbage)."""
    textpage = page.get_textpage()
    try:
        kind = own_text(textpage)
        if kind == "none":
            return None
        text = textpage.get_text_range().replace("\r\n", "\n").strip()
        printable = [c for c in text if not c.isspace()]
        if not any(c.isalnum() for c in printable):
            return None
        unprintable = sum(c == "\ufffd" or unicodedata.category(c)[0] == "C" for c in printable)
        if unprintable * 10 > len(printable):
            return None
        height = page.get_height()
        runs = []
        for i in range(textpage.count_rects()):
            left, bottom, right, top = textpage.get_rect(i)
            run_text = textpage.get_text_bounded(left, bottom, right, top).strip()
            if run_text:
                box = (
                    round(left * scale),
                    round((height - top) * scale),
                    round(right * scale),
                    round((height - bottom) * scale),
                )
                runs.append((box, run_text))
        source = TEXT_SOURCE_PDF if kind == "visible" else TEXT_SOURCE_OCR_LAYER
        return TextLayer(text, runs, source)
    finally:
        textpage.close()
