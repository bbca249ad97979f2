"""PDFs as collections hold them, made with fpdf2 and pikepdf, not with shardscribe's code:
born-digital pages (text drawn in an embedded TrueType font), scans (an image and nothing
else) and scans an earlier OCR made searchable (an invisible text layer, render mode 3,
over the image), alone or mixed in one file."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pikepdf
from fpdf import FPDF
from PIL import Image

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
A5_PT = (420.0, 595.0)


@dataclass(frozen=True)
class Digital:
    """A born-digital page: `lines` drawn at 14 pt, one under the other."""

    lines: list[str]


@dataclass(frozen=True)
class Scan:
    """A scanned page: `image` filling the page at `dpi`, and, when `layer` is given, the
    text an earlier OCR laid over it, invisible, one entry a line at 12 pt."""

    image: Image.Image
    dpi: int
    layer: list[str] | None = None


def write_document(path: Path, pages: list[Digital | Scan]) -> Path:
    """A PDF of these pages, in order."""
    pdf = FPDF(unit="pt")
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_margins(40, 40)
    for page in pages:
        if isinstance(page, Digital):
            pdf.add_page(format=A5_PT)
            pdf.set_font("DejaVu", size=14)
            for line in page.lines:
                pdf.cell(0, 22, line, new_x="LMARGIN", new_y="NEXT")
        else:
            size = (page.image.width * 72 / page.dpi, page.image.height * 72 / page.dpi)
            pdf.add_page(format=size)
            pdf.image(page.image, x=0, y=0, w=size[0], h=size[1])
    document = pikepdf.Pdf.open(io.BytesIO(bytes(pdf.output())))
    for number, page in enumerate(pages):
        if isinstance(page, Scan) and page.layer:
            add_invisible_layer(document, document.pages[number], page.layer)
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(path)
    return path


def add_invisible_layer(document: pikepdf.Pdf, page: pikepdf.Page, lines: list[str]) -> None:
    """`lines` as invisible Helvetica text (render mode 3) from the page's top left, the
    way a scanner's OCR makes a scan searchable: appended to the page's content."""
    font = pikepdf.Dictionary(
        Type=pikepdf.Name.Font,
        Subtype=pikepdf.Name.Type1,
        BaseFont=pikepdf.Name.Helvetica,
        Encoding=pikepdf.Name.WinAnsiEncoding,
    )
    page.add_resource(font, pikepdf.Name.Font, pikepdf.Name("/OCRLayer"))
    height = float(page.mediabox[3])
    shown = [
        f"BT 3 Tr /OCRLayer 12 Tf 1 0 0 1 40 {height - 40 - 20 * (n + 1):.1f} Tm "
        f"({text.replace(chr(92), '').replace('(', '').replace(')', '')}) Tj ET"
        for n, text in enumerate(lines)
    ]
    page.contents_add(document.make_stream(("q " + " ".join(shown) + " Q").encode()), prepend=False)
