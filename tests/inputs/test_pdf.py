"""PDF shards: a page per row, rendered when reached; bad PDFs and pages."""

import fsspec
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw, ImageFont

from model.images import ImageDecodeError
from pipeline.exceptions import ShardReadError
from pipeline.inputs.passthrough import decode_rows, encode_rows
from pipeline.inputs.pdf import TextLayer, page_own_text
from pipeline.inputs.readers import read_source_rows
from pipeline.inputs.shards import discover_shards
from pipeline.job_config import InputSettings
from tests.support.data import write_pdf
from tests.support.pdfs import Digital, Scan, write_document

fs = fsspec.filesystem("file")
PAGES = ["Invoice 2026-0042\nTotal due: 118.00 EUR", "", "Page three\nsigned"]


def _read(root, **settings):
    """The shard under root and its rows; pages are rendered unless told (write_pdf's
    pages draw their text: `auto` would take it)."""
    config = InputSettings(uri=str(root), **{"pdf_text_layer": "ignore"} | settings)
    (shard,) = discover_shards(fs, str(root), config)
    return shard, read_source_rows(fs, shard, config)


def test_one_pdf_is_one_shard_with_a_row_per_page_rendered_at_the_dpi(tmp_path):
    write_pdf(tmp_path / "in" / "scans" / "batch-7.pdf", PAGES)
    shard, rows = _read(tmp_path / "in", pdf_dpi=144)
    assert (shard.id, shard.format) == ("scans/batch-7", "pdf")
    assert rows.keys == ["page-0001", "page-0002", "page-0003"]
    assert rows.errors == [None, None, None]
    assert rows.passthrough.column("page").to_pylist() == [1, 2, 3]
    page = rows.images[0]
    assert isinstance(page, Image.Image) and page.size == (1190, 1684)  # 595x842 pt at 2x
    blank = rows.images[1]
    assert blank.getextrema() == ((255, 255), (255, 255), (255, 255))
    rows.close()


def test_pages_are_rendered_only_when_reached(tmp_path):
    """2,000 pages open at once; only the pages asked for are rendered."""
    write_pdf(tmp_path / "in" / "long.pdf", [f"page {i}" for i in range(2000)])
    _, rows = _read(tmp_path / "in", pdf_dpi=36)
    assert len(rows.keys) == 2000 and rows.keys[-1] == "page-2000"
    assert decode_rows(encode_rows(rows.passthrough, 2000)[-1:]).column("page")[0].as_py() == 2000
    assert rows.images[1999].size == (298, 421)
    rows.close()


def test_a_corrupt_pdf_fails_its_shard_naming_the_problem(tmp_path):
    good = write_pdf(tmp_path / "good.pdf", PAGES).read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cut.pdf").write_bytes(good[: len(good) // 3])
    with pytest.raises(ShardReadError, match=r"cannot open the PDF: not a readable PDF"):
        _read(tmp_path / "in")
    (tmp_path / "in" / "cut.pdf").write_bytes(b"not a pdf at all")
    with pytest.raises(ShardReadError, match=r"cannot open the PDF: not a readable PDF"):
        _read(tmp_path / "in")


def test_an_encrypted_pdf_fails_its_shard_saying_it_needs_a_password(tmp_path):
    write_pdf(tmp_path / "in" / "secret.pdf", PAGES, user_password="s3cret")
    with pytest.raises(ShardReadError, match=r"encrypted and needs a password"):
        _read(tmp_path / "in")


def test_a_pdf_without_pages_has_no_rows(tmp_path):
    (tmp_path / "in").mkdir()
    empty = pdfium.PdfDocument.new()
    empty.save(str(tmp_path / "in" / "empty.pdf"))
    _, rows = _read(tmp_path / "in")
    assert rows.keys == [] and rows.passthrough.num_rows == 0


def test_a_page_over_the_pixel_limit_is_its_rows_error_not_the_documents(tmp_path):
    """A 100 x 100 inch page at 200 dpi is 20,000 x 20,000 px."""
    path = write_pdf(tmp_path / "in" / "poster.pdf", ["huge"], size_pt=(7200.0, 7200.0))
    _, rows = _read(tmp_path / "in")
    with pytest.raises(ImageDecodeError, match=r"page 1 at 200 dpi is 20000x20000 px, over"):
        rows.images[0]
    rows.close()
    _, rows = _read(path.parent, pdf_dpi=36)  # 3,600 x 3,600 fits
    assert rows.images[0].size == (3600, 3600)


def test_prefer_text_layer_gives_the_pdfs_own_text_with_boxes(tmp_path):
    write_pdf(tmp_path / "in" / "a.pdf", PAGES)
    _, rows = _read(tmp_path / "in", pdf_text_layer="prefer", pdf_dpi=72)
    layer = rows.images[0]
    assert isinstance(layer, TextLayer)
    assert layer.text == "Invoice 2026-0042\nTotal due: 118.00 EUR"
    assert [text for _, text in layer.runs] == ["Invoice 2026-0042", "Total due: 118.00 EUR"]
    (x0, y0, x1, y1), _ = layer.runs[0]
    assert 45 <= x0 < x1 < 595 and 50 <= y0 < y1 < 100  # at 72 dpi, pixels = points
    assert isinstance(rows.images[1], Image.Image)  # no text layer: rendered for OCR


def scan_of(lines: list[str]) -> Image.Image:
    """A page image of printed lines, as a scanner gives it."""
    page = Image.new("L", (900, 100 + 60 * len(lines)), 255)
    draw = ImageDraw.Draw(page)
    for number, text in enumerate(lines):
        draw.text((50, 50 + 60 * number), text, fill=0, font=ImageFont.load_default(size=30))
    return page


MIXED = [
    Digital(["Invoice 2026-0042", "Total due: 118.00 EUR"]),
    Scan(scan_of(["a scanned letter"]), dpi=150),
    Scan(scan_of(["scanned and read before"]), dpi=150, layer=["scanned and reed before"]),
]


def test_each_page_is_told_by_the_text_it_holds_of_its_own(tmp_path):
    path = write_document(tmp_path / "in" / "mixed.pdf", MIXED)
    document = pdfium.PdfDocument(str(path))
    assert [page_own_text(page) for page in document] == ["visible", "none", "invisible"]
    document.close()


@pytest.mark.parametrize(
    ("use", "taken"),
    [
        ("auto", {0: ("pdf", "Invoice 2026-0042\nTotal due: 118.00 EUR")}),
        (
            "prefer",
            {
                0: ("pdf", "Invoice 2026-0042\nTotal due: 118.00 EUR"),
                2: ("ocr_layer", "scanned and reed before"),
            },
        ),
        ("ignore", {}),
    ],
)
def test_a_pages_own_text_is_taken_as_pdf_text_layer_says(tmp_path, use, taken):
    """auto: text the document draws, not an earlier OCR's layer; prefer: both; ignore:
    neither. Every other page is rendered, to be read."""
    write_document(tmp_path / "in" / "mixed.pdf", MIXED)
    _, rows = _read(tmp_path / "in", pdf_text_layer=use, pdf_dpi=72)
    pages = [rows.images[i] for i in range(3)]
    rows.close()
    layers = {
        i: (page.source, page.text) for i, page in enumerate(pages) if isinstance(page, TextLayer)
    }
    assert layers == taken
    rendered = {i: page.size for i, page in enumerate(pages) if isinstance(page, Image.Image)}
    sizes = {0: (420, 595), 1: (432, 77), 2: (432, 77)}  # A5; 900 x 160 px at 150 dpi
    assert rendered == {i: size for i, size in sizes.items() if i not in taken}
