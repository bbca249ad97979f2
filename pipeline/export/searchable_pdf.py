"""A shard as one searchable PDF, each page's text in it once. A PDF input is copied whole
(qpdf, through pikepdf) and a page the run read by OCR gets its text page's content
after its own, in the box the page shows (turned against the page's /Rotate): its own
content, inside q/Q, annotations and outline stay as they were, so it renders exactly as
before. A page that holds text of its own keeps it alone: text it draws (born-digital,
left as it is unless `force` asks for the run's text over it too) or an earlier OCR's
invisible layer (kept when the run took it as the page's text, else taken off and
replaced by the run's). Image pages become the pages of a new PDF (img2pdf, which embeds
JPEG and PNG data as they are), each sized at its image's dpi, with their text over them."""

from __future__ import annotations

import io
import itertools
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import img2pdf
import pikepdf

from pipeline.exceptions import ShardReadError
from pipeline.export.committed_pages import ImageSource, PageRow, PdfSource
from pipeline.export.geometry import POINTS_PER_INCH
from pipeline.export.ocrlayer import remove_invisible_text
from pipeline.export.textlayer import text_pages
from pipeline.inputs.pdf import TEXT_SOURCE_OCR_LAYER, TEXT_SOURCE_PDF

log = logging.getLogger(__name__)


@dataclass
class PdfPages:
    """What one exported PDF holds: its pages; of them, those left as they were because
    they have text of their own, and those whose earlier OCR layer was replaced."""

    pages: int = 0
    left_alone: int = 0
    replaced: int = 0


def layer_action(row: PageRow, source: PdfSource, force: bool) -> str:
    """What the page gets: "add" (the run's text over it), "replace" (its invisible layer
    taken off, the run's text over it), "own" (nothing: it keeps the text it has) or
    "empty" (nothing: the run read no lines on it)."""
    if row.text_source in (TEXT_SOURCE_PDF, TEXT_SOURCE_OCR_LAYER):
        return "own"  # the run's text is the page's own
    if not row.lines:
        return "empty"
    own = source.own_text(row.index)
    if own == "visible" and not force:
        return "own"
    return "replace" if own == "invisible" else "add"


def searchable_pdf(
    source: PdfSource, rows: Iterable[PageRow], chars: set[str], dpi: int, force: bool = False
) -> tuple[bytes, PdfPages]:
    """The input PDF with each OCR'd row's lines (pixels at the run's `dpi`) as invisible
    text over its page, as `layer_action` decides."""
    pages, written = source.pdf.pages, PdfPages()
    overlaid, rows_seen = [], 0
    with text_pages(chars) as layer:
        for row in rows:
            rows_seen = row.index + 1
            frame = source.frame(row.index)
            action = layer_action(row, source, force)
            written.left_alone += action == "own"
            if action == "replace":
                remove_invisible_text(source.pdf, pages[row.index])
                written.replaced += 1
            lines = row.lines if action in ("add", "replace") else []
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
        lay_over(pages[index], text.pages[index], frame.box)
    written.pages = len(pages)
    buffer = io.BytesIO()
    # True keeps a PDF's own encryption; a deterministic /ID: the same input, the same file
    source.pdf.save(buffer, encryption=source.pdf.is_encrypted, deterministic_id=True)
    return buffer.getvalue(), written


def images_pdf(
    shard_id: str, source: ImageSource, rows: Iterable[PageRow], chars: set[str]
) -> tuple[bytes | None, PdfPages]:
    """A PDF of the shard's page images in row order, each with its lines as invisible
    text (no PDF without pages). A page the run could not read is left out."""
    images, sizes, lines = [], [], []
    for row in rows:
        if row.lines is None:
            log.warning(
                "%s/%s: left out, the run could not read it (%s)", shard_id, row.key, row.error
            )
            continue
        (width, height, dpi), data = source.shown(row.key)
        images.append(data)
        sizes.append((width * POINTS_PER_INCH / dpi, height * POINTS_PER_INCH / dpi, dpi))
        lines.append(row.lines)
    if not images:
        return None, PdfPages()
    try:
        document = pikepdf.Pdf.open(io.BytesIO(_embedded(images, sizes)))
    except (img2pdf.ImageOpenError, ValueError) as error:
        raise ShardReadError(f"cannot put the images into a PDF: {error}") from None
    with text_pages(chars) as layer:
        for (width, height, dpi), page_lines in zip(sizes, lines, strict=True):
            layer.add_page((width, height), page_lines, dpi)
        text = pikepdf.Pdf.open(io.BytesIO(layer.output()))
    for page, text_page in zip(document.pages, text.pages, strict=True):
        lay_over(page, text_page, pikepdf.Rectangle(page.mediabox))
    buffer = io.BytesIO()
    document.save(buffer, deterministic_id=True)
    return buffer.getvalue(), PdfPages(pages=len(images))


def lay_over(page: pikepdf.Page, text: pikepdf.Page, box: pikepdf.Rectangle) -> None:
    """`text`'s content drawn over `page` in `box` (placed as pikepdf's add_overlay
    places a page, turned against /Rotate), the page's own content inside q/Q. The text
    goes into the page's content itself, not into a form XObject: extractors that find
    lines in page-level text only (pdfminer.six by default) then find its line breaks.
    Its fonts get names of ours, free on the page (add_overlay's are random, and the same
    output must make the same file)."""
    placed = pikepdf.Name("/Placed")
    placement = page.calc_form_xobject_placement(text.as_form_xobject(), placed, box)
    fonts = text.resources.get("/Font", pikepdf.Dictionary())
    taken = page.resources.get("/Font", pikepdf.Dictionary())
    free = (pikepdf.Name(f"/ShardscribeText{n}") for n in itertools.count())
    text.contents_coalesce()
    body = text.obj.Contents.read_bytes()  # fpdf2's: fonts are named only by Tf
    for name in list(fonts.keys()):
        ours = next(candidate for candidate in free if candidate not in taken)
        page.add_resource(fonts[name], pikepdf.Name.Font, ours)
        font = re.compile(re.escape(name.encode()) + rb"(?=\s+[-+.\d]+\s+Tf)")
        body = font.sub(str(ours).encode(), body)
    page.contents_add(b"q\n", prepend=True)
    page.contents_add(b"Q\n", prepend=False)
    page.contents_add(placement.replace(str(placed).encode() + b" Do", body), prepend=False)
    page.contents_coalesce()


def _embedded(images: list[bytes], sizes: list[tuple[float, float, int]]) -> bytes:
    """img2pdf's PDF of the images, each page the size given (img2pdf asks for the pages'
    layout in order), without dates, so the same images make the same file. They come
    upright (`ImageSource.shown`): img2pdf need not look for an EXIF orientation, which in
    a PNG costs a decode."""
    pages: Iterator[tuple[float, float, int]] = iter(sizes)

    def layout(_width_px, _height_px, _dpi):
        width, height, _ = next(pages)
        return width, height, width, height

    return img2pdf.convert(*images, layout_fun=layout, nodate=True, rotation=img2pdf.Rotation.none)
