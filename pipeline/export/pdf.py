"""A shard as one searchable PDF. A PDF input is copied whole (qpdf, through pikepdf)
and each page read by OCR gets its text page laid over it as a form XObject, in the
box the page shows (qpdf turns it against the page's /Rotate): its own content, inside
q/Q, annotations and outline stay as they were, so it renders exactly as before. Image
pages become the pages of a new PDF (fpdf2), each sized at its image's dpi, with their
text over them."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable

import pikepdf

from pipeline.errors import ShardReadError
from pipeline.export.geometry import POINTS_PER_INCH
from pipeline.export.pages import ImageSource, PageRow, PdfSource
from pipeline.export.textlayer import text_pages
from pipeline.run.pages import TEXT_SOURCE_PDF

log = logging.getLogger(__name__)


def searchable_pdf(
    source: PdfSource, rows: Iterable[PageRow], chars: set[str], dpi: int
) -> tuple[bytes, int]:
    """The input PDF with each row's lines (pixels at the run's `dpi`) as invisible text
    over its page, and its page count; pages whose text came from the PDF's own layer are
    left alone."""
    pages = source.pdf.pages
    overlaid, rows_seen = [], 0
    with text_pages(chars) as layer:
        for row in rows:
            rows_seen = row.index + 1
            frame = source.frame(row.index)
            lines = [] if row.text_source == TEXT_SOURCE_PDF else row.lines or []
            layer.add_page((frame.width, frame.height), lines, dpi)
            if lines:
                overlaid.append((row.index, frame))
        if rows_seen != len(pages):
            raise ShardReadError(
                f"the PDF has {len(pages)} pages, its output {rows_seen} rows: the PDF "
                "changed since the run"
            )
        text = pikepdf.Pdf.open(io.BytesIO(layer.output())) if overlaid else None
    for index, frame in overlaid:
        pages[index].add_overlay(text.pages[index], frame.box)
    buffer = io.BytesIO()
    source.pdf.save(buffer, encryption=source.pdf.is_encrypted)  # True keeps a PDF's own
    return buffer.getvalue(), len(pages)


def images_pdf(
    shard_id: str, source: ImageSource, rows: Iterable[PageRow], chars: set[str]
) -> tuple[bytes | None, int]:
    """A PDF of the shard's page images in row order, each with its lines as invisible
    text, and its page count (no PDF without pages). A page the run could not read is
    left out."""
    with text_pages(chars) as layer:
        pages = 0
        for row in rows:
            if row.lines is None:
                log.warning(
                    "%s/%s: left out, the run could not read it (%s)", shard_id, row.key, row.error
                )
                continue
            (width, height, dpi), shown = source.shown(row.key)
            size = (width * POINTS_PER_INCH / dpi, height * POINTS_PER_INCH / dpi)
            layer.add_page(size, row.lines, dpi, shown)
            pages += 1
        return (layer.output() if pages else None), pages
