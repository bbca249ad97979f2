"""`shardscribe export` on real page outputs: scanned PDFs (one page turned by /Rotate with
its media box moved, one cropped), PDFs mixing born-digital pages, scans and a scan an
earlier OCR made searchable, and page images, read by the bundled model through the real
pipeline, then exported to searchable PDF, hOCR and ALTO and checked with poppler's
pdftotext, pdfminer.six, pdfium's rendering and an XML parser; skipped shards, inputs
changed since the run, reruns after a kill, S3 and a store that refuses writes."""

from __future__ import annotations

import io
import logging
import math
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pikepdf
import pyarrow.parquet as pq
import pypdfium2 as pdfium
import pytest
from fpdf import FPDF
from pdfminer.high_level import extract_text
from PIL import ExifTags, Image, ImageDraw, ImageFont, ImageOps

from jobs.cli import main
from model.bundled import DEFAULT_MODEL
from pipeline.export.export_run import ExportSettings, export_output
from pipeline.export.words import split_words
from pipeline.run.runner import run_job
from pipeline.synthetic.demo_lines import sample_lines
from tests.conftest import job_config
from tests.support.data import write_pdf
from tests.support.flaky_proxy import flaky_proxy
from tests.support.pdfs import Digital, Scan, write_document

SCAN_DPI = 150  # the page images, and the dpi the run renders the PDF at
REPORT = ["Quarterly report 2026", "Revenue rose by four percent", "Signed: the board"]
LETTER = ["Dear reader,", "this page was typeset."]
EARLIER_OCR = ["Tbe earlier 0CR", "of this scan"]  # what a scanner's OCR made of a page
HOCR = "{http://www.w3.org/1999/xhtml}"
ALTO = "{http://www.loc.gov/standards/alto/ns-v4#}"


def printed_page(seed: int, lines: int) -> Image.Image:
    """A small page of short printed lines in Pillow's font, which the bundled model reads."""
    font = ImageFont.load_default(size=34)
    page = Image.new("L", (900, 120 + 64 * lines), 255)
    draw = ImageDraw.Draw(page)
    for number, text in enumerate(sample_lines(lines, seed)):
        draw.text((60, 60 + 64 * number), text, fill=0, font=font)
    return page


def write_scanned_pdf(path: Path, pages: list[Image.Image]) -> Path:
    """A PDF of page images at SCAN_DPI, no text layer. Page 2 is stored turned a quarter
    left and shown upright by /Rotate 90, its media box moved off the origin; page 3 shows
    a crop box inside its media box."""
    pdf = FPDF(unit="pt")
    for number, page in enumerate(pages):
        stored = page.rotate(90, expand=True) if number == 1 else page
        size = (stored.width * 72 / SCAN_DPI, stored.height * 72 / SCAN_DPI)
        pdf.add_page(format=size)
        pdf.image(stored, x=0, y=0, w=size[0], h=size[1])
    document = pikepdf.Pdf.open(io.BytesIO(bytes(pdf.output())))
    turned, cropped = document.pages[1], document.pages[2]
    turned.Rotate = 90
    width, height = float(turned.mediabox[2]), float(turned.mediabox[3])
    turned.MediaBox = [-20, -30, width - 20, height - 30]
    width, height = float(cropped.mediabox[2]), float(cropped.mediabox[3])
    cropped.CropBox = [25, 10, width - 15, height - 20]
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ray_cluster) -> dict:
    """Committed page outputs read by the bundled model: a scanned PDF of three pages; a
    folder of four page images (PNGs recording 120 dpi and none, JPEGs recording 200 dpi,
    turned by its EXIF orientation, and 100 dpi), read with line scores; and two PDFs as
    collections hold them, a born-digital page, a scan and a scan with an earlier OCR's
    layer in one, a born-digital page alone in the other, read with pdf_text_layer auto
    (mixed) and ignore (mixed-ignore)."""
    root = tmp_path_factory.mktemp("export")
    pages = [printed_page(seed, lines) for seed, lines in ((1, 3), (2, 2), (3, 3))]
    write_scanned_pdf(root / "pdfs" / "scan.pdf", pages)
    (root / "images").mkdir()
    printed_page(4, 2).save(root / "images" / "a.png", dpi=(120, 120))
    printed_page(5, 3).save(root / "images" / "b.png")
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored a quarter turn left, shown upright
    printed_page(6, 2).rotate(90, expand=True).save(
        root / "images" / "c.jpg", exif=exif, dpi=(200, 200)
    )
    printed_page(7, 2).save(root / "images" / "d.jpg", dpi=(100, 100))
    mixed = [
        Digital(REPORT),
        Scan(printed_page(8, 2), SCAN_DPI),
        Scan(printed_page(9, 2), SCAN_DPI, layer=EARLIER_OCR),
    ]
    write_document(root / "mixed" / "mixed.pdf", mixed)
    write_document(root / "mixed" / "digital.pdf", [Digital(LETTER)])
    made = {}
    for kind, folder, reading, label in (
        ("pdfs", "pdfs", {"pdf_dpi": SCAN_DPI}, {}),
        ("images", "images", {}, {"score": True}),
        ("mixed", "mixed", {"pdf_dpi": SCAN_DPI}, {}),
        ("mixed-ignore", "mixed", {"pdf_dpi": SCAN_DPI, "pdf_text_layer": "ignore"}, {}),
    ):
        config = job_config(
            root / folder,
            root / f"out-{kind}",
            DEFAULT_MODEL,
            input={"segment": "lines", **reading},
            generation={"max_new_tokens": 64},
            label=label,
        )
        assert run_job(config).exit_code == 0
        table = pq.read_table(root / f"out-{kind}")
        rows = table.to_pylist()
        if kind.startswith("mixed"):
            made[kind] = {(row["shard"], row["key"]): row for row in rows}
        else:
            made[kind] = {row["key"]: row for row in rows}
    return {"root": root, **made}


def export(
    runs: dict, kind: str, to: str, out: str | None = None, **settings
) -> tuple[Path, object]:
    target = out or str(runs["root"] / f"{kind}-{to}")
    output = str(runs["root"] / f"out-{kind}")
    return Path(target), export_output(ExportSettings(output=output, to=to, out=target, **settings))


def pdftotext(path: Path, *options: str) -> str:
    command = ["pdftotext", "-cropbox", *options, str(path), "-"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def poppler_words(path: Path) -> list[list[tuple[float, float, float, float, str]]]:
    """Each page's words as pdftotext -bbox finds them (points, from the shown page's top
    left, in its reading order)."""
    document = ET.fromstring(pdftotext(path, "-bbox"))
    return [
        [
            (*(float(word.get(name)) for name in ("xMin", "yMin", "xMax", "yMax")), word.text)
            for word in page.iter(f"{HOCR}word")
        ]
        for page in document.iter(f"{HOCR}page")
    ]


def rendered(path: Path) -> list[np.ndarray]:
    document = pdfium.PdfDocument(str(path))
    try:
        return [np.asarray(page.render(scale=1).to_pil()) for page in document]
    finally:
        document.close()


def printed_lines(row: dict) -> list[str]:
    return [" ".join(line["text"].split()) for line in row["lines"] if line["text"].strip()]


def test_a_pdf_becomes_searchable_where_its_words_are_printed_and_renders_unchanged(runs):
    rows = [runs["pdfs"][f"page-{n:04d}"] for n in (1, 2, 3)]
    assert [len(row["lines"]) for row in rows] == [3, 2, 3]
    source = runs["root"] / "pdfs" / "scan.pdf"
    assert pdftotext(source).strip("\f\n") == ""  # a scan: no text of its own
    out, summary = export(runs, "pdfs", "pdf")
    assert (summary.exit_code, summary.shards_exported, summary.pages, summary.files) == (
        0,
        1,
        3,
        1,
    )
    exported = out / "scan.pdf"
    texts = pdftotext(exported).split("\f")[:3]
    assert [
        [" ".join(line.split()) for line in text.splitlines() if line.strip()] for text in texts
    ] == [printed_lines(row) for row in rows]
    scale = 72 / SCAN_DPI
    for row, words in zip(rows, poppler_words(exported), strict=True):
        expected = [(line, word) for line in row["lines"] for word in split_words(line)]
        assert [word[4] for word in words] == [word.text for _, word in expected]
        for (x0, y0, x1, y1, _), (line, word) in zip(words, expected, strict=True):
            box = [line[name] * scale for name in ("x0", "y0", "x1", "y1")]
            assert box[0] - 2 <= x0 < x1 <= box[2] + 2 and box[1] - 2 <= y0 < y1 <= box[3] + 2
            own = [word.x0 * scale, word.y0 * scale, word.x1 * scale, word.y1 * scale]
            assert np.allclose([x0, y0, x1, y1], own, atol=1.0)  # where hOCR and ALTO say
    before, after = rendered(source), rendered(exported)
    assert [page.shape for page in after] == [page.shape for page in before]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


IMAGES = {"a.png": 120, "b.png": 300, "c.jpg": 200, "d.jpg": 100}  # b.png records none


def shown_size(runs: dict, name: str) -> tuple[int, int]:
    """An image's size upright, as the run decoded it."""
    return ImageOps.exif_transpose(Image.open(runs["root"] / "images" / name)).size


def test_page_images_become_one_pdf_per_shard_sized_at_their_dpi(runs):
    out, summary = export(runs, "images", "pdf")
    assert (summary.exit_code, summary.pages, summary.files) == (0, 4, 1)
    document = pikepdf.Pdf.open(out / "part-00000.pdf")
    sizes = [[round(float(value), 2) for value in page.mediabox[2:]] for page in document.pages]
    assert sizes == [
        [round(side * 72 / dpi, 2) for side in shown_size(runs, name)]
        for name, dpi in IMAGES.items()
    ]
    (jpeg,) = document.pages[3].images.values()  # d.jpg as it is: no second compression
    assert jpeg.read_raw_bytes() == (runs["root"] / "images" / "d.jpg").read_bytes()
    texts = pdftotext(out / "part-00000.pdf").split("\f")[:4]
    assert [
        [" ".join(line.split()) for line in text.splitlines() if line.strip()] for text in texts
    ] == [printed_lines(runs["images"][name]) for name in IMAGES]
    b = Image.open(runs["root"] / "images" / "b.png")
    pixels = rendered(out / "part-00000.pdf")[1]  # b.png at 72 dpi: a quarter of its pixels
    expected = np.asarray(b.convert("RGB").resize(pixels.shape[1::-1], Image.Resampling.BOX))
    assert np.abs(pixels[..., :3].astype(int) - expected.astype(int)).mean() < 8


def read_hocr(path: Path) -> dict:
    page = ET.parse(path).getroot().find(f".//{HOCR}div[@class='ocr_page']")
    lines = []
    for line in page.iter(f"{HOCR}span"):
        if line.get("class") != "ocr_line":
            continue
        words = [
            (word.text, word.get("title")) for word in line if word.get("class") == "ocrx_word"
        ]
        lines.append((line.get("title"), words))
    return {"title": page.get("title"), "lines": lines}


def test_hocr_has_every_line_and_word_with_its_box_and_reads_back_as_the_page(runs):
    out, summary = export(runs, "pdfs", "hocr")
    assert (summary.exit_code, summary.pages, summary.files) == (0, 3, 3)
    assert sorted(p.name for p in (out / "scan").iterdir()) == [
        "page-0001.hocr",
        "page-0002.hocr",
        "page-0003.hocr",
    ]
    source = pdfium.PdfDocument(str(runs["root"] / "pdfs" / "scan.pdf"))
    for number in (1, 2, 3):
        row = runs["pdfs"][f"page-{number:04d}"]
        hocr = read_hocr(out / "scan" / f"page-{number:04d}.hocr")
        image = source[number - 1].render(scale=SCAN_DPI / 72)
        width, height = image.width, image.height  # what the run read
        assert hocr["title"] == (
            f'image "scan.pdf"; bbox 0 0 {width} {height}; ppageno {number - 1}; '
            f"scan_res {SCAN_DPI} {SCAN_DPI}"
        )
        assert [title for title, _ in hocr["lines"]] == [
            f"bbox {line['x0']} {line['y0']} {line['x1']} {line['y1']}" for line in row["lines"]
        ]
        for (_, words), line in zip(hocr["lines"], row["lines"], strict=True):
            assert [text for text, _ in words] == line["text"].split()
            assert [title for _, title in words] == [
                f"bbox {w.x0} {w.y0} {w.x1} {w.y1}" for w in split_words(line)
            ]
        read_back = "\n".join(" ".join(text for text, _ in words) for _, words in hocr["lines"])
        assert read_back == "\n".join(" ".join(line["text"].split()) for line in row["lines"])
    source.close()
    _, again = export(runs, "pdfs", "hocr")
    assert (again.exit_code, again.files, again.shards_unchanged) == (0, 0, 1)


def test_alto_has_every_line_and_string_with_its_position_and_reads_back(runs):
    out, summary = export(runs, "images", "alto")
    assert (summary.exit_code, summary.pages, summary.files) == (0, 4, 4)
    for key, dpi in IMAGES.items():
        row = runs["images"][key]
        root = ET.parse(out / "part-00000" / f"{key}.xml").getroot()
        assert root.tag == f"{ALTO}alto"
        assert root.find(f"{ALTO}Description/{ALTO}MeasurementUnit").text == "pixel"
        settings = root.find(f".//{ALTO}processingStepSettings").text
        assert settings == f"page 1; pixels of the page at {dpi} dpi"
        page = root.find(f".//{ALTO}Page")
        size = (int(page.get("WIDTH")), int(page.get("HEIGHT")))
        assert size == shown_size(runs, key)
        lines = list(root.iter(f"{ALTO}TextLine"))
        position = ("HPOS", "VPOS", "WIDTH", "HEIGHT")
        assert [tuple(int(line.get(name)) for name in position) for line in lines] == [
            (line["x0"], line["y0"], line["x1"] - line["x0"], line["y1"] - line["y0"])
            for line in row["lines"]
        ]
        for element, line in zip(lines, row["lines"], strict=True):
            strings = element.findall(f"{ALTO}String")
            assert [
                (s.get("CONTENT"), int(s.get("HPOS")), int(s.get("WIDTH"))) for s in strings
            ] == [(w.text, w.x0, w.x1 - w.x0) for w in split_words(line)]
        read_back = "\n".join(
            " ".join(s.get("CONTENT") for s in line.findall(f"{ALTO}String")) for line in lines
        )
        assert read_back == "\n".join(" ".join(line["text"].split()) for line in row["lines"])


def test_a_shard_not_committed_is_skipped_and_named_and_reruns_write_only_whats_missing(
    runs, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    output = str(runs["root"] / "out-pdfs")
    late = write_pdf(runs["root"] / "pdfs" / "late.pdf", ["arrived after the run"])
    try:
        out = tmp_path / "searchable"
        assert main(["export", output, "--to", "pdf", "--out", str(out)]) == 1
        assert "skipped shard late: not committed (not committed yet)" in caplog.text
        assert re.search(r"done: 1 shards exported, 0 already exported, 1 skipped", caplog.text)
        assert sorted(p.name for p in out.iterdir()) == ["scan.pdf"]
        written = (out / "scan.pdf").stat().st_mtime_ns
        (out / ".scan.pdf.0123.tmp").write_bytes(b"%PDF-1.7 torn")  # left by a killed export
        caplog.clear()
        assert main(["export", output, "--to", "pdf", "--out", str(out)]) == 1
        assert re.search(r"done: 0 shards exported, 1 already exported, 1 skipped", caplog.text)
        assert (out / "scan.pdf").stat().st_mtime_ns == written
        (out / "scan.pdf").unlink()  # a file lost: the next export writes it again
        settings = ExportSettings(output=output, to="pdf", out=str(out))
        assert export_output(settings).files == 1
    finally:
        late.unlink()


def test_export_to_s3_writes_the_same_files(runs, s3, monkeypatch):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    s3.make_bucket("exports")
    local, _ = export(runs, "pdfs", "alto")
    _, summary = export(runs, "pdfs", "alto", out="s3://exports/alto/")
    assert (summary.exit_code, summary.files) == (0, 3)
    fs = s3.filesystem()
    for path in sorted((local / "scan").iterdir()):
        assert fs.cat_file(f"exports/alto/scan/{path.name}") == path.read_bytes()
    _, again = export(runs, "pdfs", "alto", out="s3://exports/alto/")
    assert again.files == 0


def test_an_output_without_line_boxes_is_refused(tmp_path, tiny_model, ray_cluster):
    write_pdf(tmp_path / "in" / "doc.pdf", ["whole pages"])
    config = job_config(tmp_path / "in", tmp_path / "out", tiny_model, input={"pdf_dpi": 72})
    assert run_job(config).exit_code == 0
    code = main(["export", str(tmp_path / "out"), "--to", "hocr", "--out", str(tmp_path / "x")])
    assert code == 2
    assert not (tmp_path / "x").exists()


def page_texts(path: Path) -> list[list[str]]:
    """Each page's lines as pdftotext reads them, spaces made single."""
    pages = pdftotext(path).split("\f")[:-1]
    return [
        [" ".join(line.split()) for line in page.splitlines() if line.strip()] for page in pages
    ]


def pdfminer_texts(path: Path) -> list[list[str]]:
    """The same as pdfminer.six reads them."""
    count = len(pikepdf.Pdf.open(path).pages)
    texts = [extract_text(str(path), page_numbers=[number]) for number in range(count)]
    return [
        [" ".join(line.split()) for line in text.splitlines() if line.strip()] for text in texts
    ]


def test_a_mixed_pdf_holds_each_pages_text_once_in_reading_order(runs):
    """auto: the born-digital pages keep their own text (the run took it: text_source pdf),
    the scan gets the run's, and the earlier OCR's layer is replaced by the run's."""
    rows = [runs["mixed"][("mixed", f"page-{n:04d}")] for n in (1, 2, 3)]
    assert [row["text_source"] for row in rows] == ["pdf", "ocr", "ocr"]
    assert rows[0]["text"] == "\n".join(REPORT)
    assert runs["mixed"][("digital", "page-0001")]["text"] == "\n".join(LETTER)
    source = runs["root"] / "mixed" / "mixed.pdf"
    assert page_texts(source) == [REPORT, [], EARLIER_OCR]
    out, summary = export(runs, "mixed", "pdf")
    assert (summary.exit_code, summary.pages, summary.files) == (0, 4, 2)
    assert (summary.pages_left_alone, summary.layers_replaced) == (2, 1)
    expected = [REPORT, printed_lines(rows[1]), printed_lines(rows[2])]
    assert page_texts(out / "mixed.pdf") == expected
    assert pdfminer_texts(out / "mixed.pdf") == expected
    assert page_texts(out / "digital.pdf") == pdfminer_texts(out / "digital.pdf") == [LETTER]
    before, after = rendered(source), rendered(out / "mixed.pdf")
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_pages_a_run_read_by_ocr_keep_their_own_text_unless_forced(runs):
    """ignore (every page read, to evaluate the model): export still leaves the pages
    that draw their text alone and replaces the earlier OCR's layer; forced, it lays the
    run's text over a born-digital page too, which then holds both."""
    rows = [runs["mixed-ignore"][("mixed", f"page-{n:04d}")] for n in (1, 2, 3)]
    assert all("text_source" not in row for row in rows)  # ignore: as outputs always were
    out, summary = export(runs, "mixed-ignore", "pdf")
    assert (summary.exit_code, summary.pages_left_alone, summary.layers_replaced) == (0, 2, 1)
    assert page_texts(out / "mixed.pdf") == [
        REPORT,
        printed_lines(rows[1]),
        printed_lines(rows[2]),
    ]
    forced_out = str(runs["root"] / "mixed-ignore-forced")
    forced, summary = export(runs, "mixed-ignore", "pdf", forced_out, force_text_layer=True)
    assert (summary.exit_code, summary.pages_left_alone, summary.layers_replaced) == (0, 0, 1)
    # pdfminer.six, as poppler takes text drawn twice at one place for one (fake bold)
    words = " ".join(pdfminer_texts(forced / "mixed.pdf")[0]).split()
    read = [word for line in rows[0]["lines"] for word in line["text"].split()]
    assert sorted(words) == sorted(" ".join(REPORT).split() + read)


def test_hocr_and_alto_carry_the_runs_line_scores_as_word_confidences(runs):
    hocr, _ = export(runs, "images", "hocr")
    alto, _ = export(runs, "images", "alto")
    for key in IMAGES:
        lines = [line for line in runs["images"][key]["lines"] if line["text"].split()]
        expected = [
            (word.text, min(1.0, math.exp(line["score"])))
            for line in lines
            for word in split_words(line)
        ]
        words = [
            (text, title)
            for _, line in read_hocr(hocr / "part-00000" / f"{key}.hocr")["lines"]
            for text, title in line
        ]
        assert [(text, title.split("; ")[1]) for text, title in words] == [
            (text, f"x_wconf {round(100 * confidence)}") for text, confidence in expected
        ]
        root = ET.parse(alto / "part-00000" / f"{key}.xml").getroot()
        strings = [s for s in root.iter(f"{ALTO}String") if s.get("CONTENT")]
        assert [(s.get("CONTENT"), s.get("WC")) for s in strings] == [
            (text, f"{confidence:.4f}") for text, confidence in expected
        ]


def png_data(path: Path) -> bytes:
    """A PNG's pixel data as the file holds it: its IDAT chunks joined."""
    data, offset, found = path.read_bytes(), 8, b""
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        if data[offset + 4 : offset + 8] == b"IDAT":
            found += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    return found


def test_page_images_go_into_the_pdf_as_their_files_hold_them(runs):
    out, _ = export(runs, "images", "pdf")
    document = pikepdf.Pdf.open(out / "part-00000.pdf")
    (png,) = document.pages[0].images.values()
    assert png.read_raw_bytes() == png_data(runs["root"] / "images" / "a.png")


def test_an_input_changed_since_the_run_is_refused_by_name_and_the_rest_exported(
    runs, tmp_path, caplog
):
    """The new PDF has as many pages as the old: its page count alone would not tell."""
    caplog.set_level(logging.INFO)
    path = runs["root"] / "mixed" / "mixed.pdf"
    original, stat = path.read_bytes(), path.stat()
    try:
        write_document(path, [Digital(["another text"]), Digital(["and more"]), Digital([])])
        out = tmp_path / "searchable"
        output = str(runs["root"] / "out-mixed")
        assert main(["export", output, "--to", "pdf", "--out", str(out)]) == 1
        assert sorted(p.name for p in out.iterdir()) == ["digital.pdf"]
        assert (
            "failed shard mixed: input: mixed.pdf changed since the run read it: its text "
            "would land on other pages; restore the file, or read it again with `shardscribe "
            "run` into a new output"
        ) in caplog.text
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def visible_files(folder: Path) -> dict[str, bytes]:
    """Every file under folder but the hidden temporaries a killed write leaves."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def export_command(output: Path, to: str, out: Path, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jobs",
        "export",
        str(output),
        "--to",
        to,
        "--out",
        str(out),
        *flags,
    ]


def test_an_export_killed_then_rerun_writes_the_files_of_one_never_killed(runs, tmp_path):
    """kill -9 as soon as its first file lands; the rerun's files are byte for byte those
    of an export never interrupted, and neither prints a library's log lines."""
    output = runs["root"] / "out-mixed"
    for to in ("pdf", "hocr"):
        folder = tmp_path / f"killed-{to}"
        killed = subprocess.Popen(export_command(output, to, folder), stderr=subprocess.DEVNULL)
        while killed.poll() is None and not (folder.exists() and visible_files(folder)):
            time.sleep(0.005)
        killed.kill()
        killed.wait()
        rerun = subprocess.run(export_command(output, to, folder), capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        whole = subprocess.run(
            export_command(output, to, tmp_path / f"whole-{to}"), capture_output=True, text=True
        )
        assert whole.returncode == 0, whole.stderr
        assert visible_files(folder) == visible_files(tmp_path / f"whole-{to}")
        assert "pikepdf" not in rerun.stderr + whole.stderr
    verbose = subprocess.run(
        export_command(output, "alto", tmp_path / "verbose", "-v"), capture_output=True, text=True
    )
    assert "pikepdf C++ to Python logger bridge initialized" in verbose.stderr


def test_a_store_refusing_writes_stops_the_export_at_once_with_one_clear_line(
    runs, s3, monkeypatch, tmp_path, caplog
):
    """403 AccessDenied for every PUT: no shard after the first is tried (exit 2)."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    s3.make_bucket("locked")
    output = str(runs["root"] / "out-mixed")
    with flaky_proxy(s3.endpoint_url, fault_rate=1.0, modes=("403",), methods=("PUT",)) as proxy:
        config = tmp_path / "job.yaml"
        config.write_text(f"storage:\n  endpoint_url: {proxy.endpoint_url}\n")
        code = main(
            [
                "export",
                output,
                "--to",
                "alto",
                "--out",
                "s3://locked/alto/",
                "--config",
                str(config),
            ]
        )
    assert code == 2
    assert proxy.stats.injected == {"403": 1}
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith("cannot write the export: access to s3://locked/alto/ denied (")


def test_passing_store_errors_during_export_are_retried(runs, s3, monkeypatch, tmp_path):
    """A third of the requests to the store fail (500, 503, reset): the export ends as
    one on a store that never failed."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    s3.make_bucket("flaky-export")
    local, _ = export(runs, "mixed", "alto")
    output = str(runs["root"] / "out-mixed")
    with flaky_proxy(
        s3.endpoint_url, fault_rate=0.3, modes=("500", "503", "reset"), seed=3
    ) as proxy:
        config = tmp_path / "job.yaml"
        config.write_text(
            f"storage:\n  endpoint_url: {proxy.endpoint_url}\nretry:\n  backoff_s: 0.1\n"
        )
        arguments = ["--to", "alto", "--out", "s3://flaky-export/alto/", "--config", str(config)]
        code = main(["export", output, *arguments])
    assert code == 0
    assert sum(proxy.stats.injected.values()) >= 1
    fs = s3.filesystem()
    for path in sorted(local.rglob("*.xml")):
        relative = path.relative_to(local)
        assert fs.cat_file(f"flaky-export/alto/{relative}") == path.read_bytes()
