"""Pages and PDFs end to end with real Ray: one row per page made of its lines read in
reading order, equal to `generate` on each line; bad PDFs and pages; text layers."""

from __future__ import annotations

import pyarrow.parquet as pq
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageFont

from pipeline.inputs.segmentation import segment_lines
from pipeline.run.runner import run_job
from pipeline.synthetic.drawing import PageLayout, draw_page, png_bytes
from tests.conftest import job_config
from tests.support.data import write_pdf, write_tar

pytestmark = pytest.mark.usefixtures("ray_cluster")

PAGES = ["Invoice 2026-0042\nTotal due: 118.00 EUR\nPaid by transfer", "", "Page three\nsigned"]


def _expected(page: Image.Image, reference) -> tuple[str, list[dict]]:
    """What the page should read as: each line `generate` alone, in reading order."""
    lines = []
    for line in segment_lines(page):
        x0, y0, x1, y1 = line.box
        text = reference.text(png_bytes(line.crop), max_new_tokens=12)
        lines.append({"x0": x0, "y0": y0, "x1": x1, "y1": y1, "text": text})
    return "\n".join(line["text"] for line in lines), lines


def _rendered(path, index: int, dpi: int) -> Image.Image:
    document = pdfium.PdfDocument(str(path))
    page = document[index].render(scale=dpi / 72, grayscale=True).to_pil().convert("RGB")
    document.close()
    return page


def test_pdfs_become_a_row_per_page_and_bad_ones_fail_alone(tiny_model, reference, tmp_path):
    root = tmp_path / "in"
    doc = write_pdf(root / "doc.pdf", PAGES)
    write_pdf(root / "secret.pdf", PAGES, user_password="s3cret")
    (root / "cut.pdf").write_bytes(doc.read_bytes()[:500])
    write_pdf(root / "poster.pdf", ["huge"], size_pt=(7200.0, 7200.0))
    pdfium.PdfDocument.new().save(str(root / "empty.pdf"))
    config = job_config(
        root,
        tmp_path / "out",
        tiny_model,
        # write_pdf's pages draw their text (auto would take it): read them all
        input={
            "segment": "lines",
            "pdf_dpi": 72,
            "max_image_pixels": 10_000_000,
            "pdf_text_layer": "ignore",
        },
    )
    summary = run_job(config)
    assert (summary.shards_committed, summary.rows, summary.row_errors) == (3, 4, 1)
    assert sorted(summary.failed) == ["cut", "secret"]
    assert summary.failed["cut"].startswith("input: cannot open the PDF: not a readable PDF (")
    assert summary.failed["secret"] == (
        "input: cannot open the PDF: it is encrypted and needs a password"
    )
    table = pq.read_table(tmp_path / "out" / "doc.parquet")
    assert table.column_names == ["shard", "key", "text", "error", "lines", "page"]
    rows = table.to_pylist()
    assert [(row["key"], row["page"]) for row in rows] == [
        ("page-0001", 1),
        ("page-0002", 2),
        ("page-0003", 3),
    ]
    for row, source in zip(rows, PAGES, strict=True):
        text, lines = _expected(_rendered(doc, row["page"] - 1, 72), reference)
        assert len(lines) == len(source.splitlines())
        assert (row["text"], row["lines"], row["error"]) == (text, lines, None)
    assert rows[1]["text"] == "" and rows[1]["lines"] == []  # a blank page: no text, no error
    (poster,) = pq.read_table(tmp_path / "out" / "poster.parquet").to_pylist()
    assert poster["text"] is None and poster["lines"] is None
    assert poster["error"] == (
        "decode: page 1 at 72 dpi is 7200x7200 px, over input.max_image_pixels (10000000); "
        "lower input.pdf_dpi"
    )
    assert pq.read_table(tmp_path / "out" / "empty.parquet").num_rows == 0


def test_prefer_text_layer_takes_the_pdfs_text_and_reads_only_pages_without(
    tiny_model, reference, tmp_path
):
    doc = write_pdf(tmp_path / "in" / "doc.pdf", PAGES)
    config = job_config(
        tmp_path / "in",
        tmp_path / "out",
        tiny_model,
        input={"segment": "lines", "pdf_dpi": 72, "pdf_text_layer": "prefer"},
    )
    assert run_job(config).exit_code == 0
    rows = pq.read_table(tmp_path / "out" / "doc.parquet").to_pylist()
    assert [row["text_source"] for row in rows] == ["pdf", "ocr", "pdf"]
    assert [row["text"] for row in rows] == [PAGES[0], "", PAGES[2]]
    assert [line["text"] for line in rows[0]["lines"]] == PAGES[0].splitlines()
    for line in rows[0]["lines"]:
        assert 40 <= line["x0"] < line["x1"] <= 595 and 40 <= line["y0"] < line["y1"] <= 200
    assert rows[1]["lines"] == []
    assert _expected(_rendered(doc, 1, 72), reference) == ("", [])


def test_page_images_two_columns_are_read_in_order_with_line_scores(
    tiny_model, reference, tmp_path
):
    font = ImageFont.load_default(size=20)
    layout = PageLayout(width=900, height=500, margin=40, columns=2, gutter=60)
    page, printed = draw_page("words in two columns " * 40, font, layout, title="Title")
    write_tar(tmp_path / "in" / "pages.tar", {"p1.png": png_bytes(page), "p1.txt": b"reference"})
    config = job_config(
        tmp_path / "in",
        tmp_path / "out",
        tiny_model,
        input={"segment": "lines"},
        label={"score": True},
        compute={"batch_size": 3},  # a page's lines span several generate calls
    )
    assert run_job(config).exit_code == 0
    (row,) = pq.read_table(tmp_path / "out" / "pages.parquet").to_pylist()
    text, lines = _expected(page.convert("RGB"), reference)
    assert len(lines) == len(printed) > 6
    assert row["text"] == text and row["txt"] == "reference"
    assert [{k: v for k, v in line.items() if k != "score"} for line in row["lines"]] == lines
    scores = [line["score"] for line in row["lines"]]
    assert all(score <= 0 for score in scores)
    assert row["score"] == pytest.approx(sum(scores) / len(scores))
