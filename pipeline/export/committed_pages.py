"""A committed page output read back one page at a time, beside its input: the rows of a
shard's Parquet file in batches, and the page each row was read from (a PDF's page frame,
or the image decoded as the run decoded it)."""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import pikepdf
import pyarrow.parquet as pq
import pypdfium2 as pdfium
from PIL import ExifTags, Image

from model.images import ImageDecodeError, decode_image
from pipeline.exceptions import ShardReadError
from pipeline.export.geometry import Frame, image_dpi, page_frame
from pipeline.inputs.pdf import OwnText, page_own_text
from pipeline.inputs.readers import read_source_rows
from pipeline.inputs.shards import Shard
from pipeline.job_config import InputSettings

ROWS_PER_BATCH = 32
COLUMNS = ("key", "lines", "error", "text_source")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L")
AS_THEY_ARE = {("JPEG", "L"), ("JPEG", "RGB"), ("PNG", "1"), ("PNG", "L"), ("PNG", "RGB")}
TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class PageRow:
    """A page's output row: its lines (boxes in page pixels, text; None when the page
    itself could not be read), its error, and where its text came from."""

    index: int
    key: str
    lines: list[dict] | None
    error: str | None
    text_source: str | None  # "pdf", "ocr_layer": the PDF's own text; "ocr"; None: unsaid


def page_rows(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[PageRow]:
    """The rows of a committed shard in order, read a batch at a time."""
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        columns = [name for name in COLUMNS if name in parquet.schema_arrow.names]
        index = 0
        for batch in parquet.iter_batches(batch_size=ROWS_PER_BATCH, columns=columns):
            for row in batch.to_pylist():
                yield PageRow(index, row["key"], row["lines"], row["error"], row.get("text_source"))
                index += 1


def characters(fs: fsspec.AbstractFileSystem, path: str) -> set[str]:
    """Every character of a committed shard's line texts."""
    found: set[str] = set()
    for row in page_rows(fs, path):
        for line in row.lines or []:
            found.update(line["text"] or "")
    return found


def source_name(shard: Shard) -> str:
    """The input file's path under the input root (its name when the input is that file)."""
    relative = posixpath.relpath(shard.paths[0], shard.root)
    return posixpath.basename(shard.paths[0]) if relative == "." else relative


class PdfSource:
    """An input PDF, read whole, open for its page frames and to be copied (qpdf, through
    pikepdf), and for what text its pages hold (pdfium, as the run saw it)."""

    def __init__(self, data: bytes):
        self.data = data
        self._pdfium: pdfium.PdfDocument | None = None
        try:
            self.pdf = pikepdf.Pdf.open(io.BytesIO(data))
        except pikepdf.PdfError as error:
            raise ShardReadError(f"cannot open the PDF: {error}") from None

    def own_text(self, index: int) -> OwnText:
        """What text page `index` holds of its own (`pipeline.inputs.pdf.own_text`)."""
        if self._pdfium is None:
            self._pdfium = pdfium.PdfDocument(self.data)
        page = self._pdfium[index]
        try:
            return page_own_text(page)
        finally:
            page.close()

    def frame(self, index: int) -> Frame:
        if index >= len(self.pdf.pages):
            raise ShardReadError(
                f"the PDF has {len(self.pdf.pages)} pages, its output more rows: the PDF "
                "changed since the run"
            )
        return page_frame(self.pdf.pages[index])

    def close(self) -> None:
        self.pdf.close()
        if self._pdfium is not None:
            self._pdfium.close()


class ImageSource:
    """An input shard of images (tar, Parquet, image files), read as the run's reader reads
    it; a page is decoded only when its pixels are needed."""

    def __init__(self, fs: fsspec.AbstractFileSystem, shard: Shard, settings: InputSettings):
        self.rows = read_source_rows(fs, shard, settings)
        self.positions = {key: i for i, key in enumerate(self.rows.keys)}
        self.max_pixels = settings.max_image_pixels

    def _data(self, key: str) -> bytes:
        if key not in self.positions:
            raise ShardReadError(f"no image {key!r} in the input shard: it changed since the run")
        return self.rows.images[self.positions[key]]

    def _opened(self, key: str) -> tuple[Image.Image, int]:
        """The file opened (its header read, no pixels decoded) and its EXIF orientation.
        A PNG's EXIF may follow its pixels, where Pillow finds it only by decoding them:
        a PNG without an eXIf chunk is upright, and is not decoded."""
        data = self._data(key)
        try:
            opened = Image.open(io.BytesIO(data))
        except (OSError, Image.UnidentifiedImageError) as error:
            raise ImageDecodeError(f"cannot decode image: {error}") from None
        if opened.format == "PNG" and not _png_has_exif(data):
            return opened, 1
        return opened, opened.getexif().get(ExifTags.Base.Orientation, 1)

    def image(self, key: str) -> Image.Image:
        """The page `key` as the run decoded it (EXIF orientation applied: the boxes are in
        its pixels); ImageDecodeError if it cannot be."""
        return decode_image(self._data(key), self.max_pixels)

    def geometry(self, key: str) -> tuple[int, int, int]:
        """(width, height, dpi) of the page as the run decoded it."""
        opened, orientation = self._opened(key)
        width, height = opened.size
        if orientation in TURNED:
            width, height = height, width
        return width, height, image_dpi(opened)

    def shown(self, key: str) -> tuple[tuple[int, int, int], bytes]:
        """The page's geometry, and the file a PDF page shows: a JPEG or PNG as it is when
        it needs no turning (img2pdf embeds its data without decoding it), else the pixels
        the run decoded as a PNG, grey when the file is."""
        opened, orientation = self._opened(key)
        geometry = (*opened.size, image_dpi(opened))
        if orientation == 1 and (opened.format, opened.mode) in AS_THEY_ARE:
            return geometry, self._data(key)
        decoded = self.image(key)
        shown = decoded.convert("L") if opened.mode in GREY_MODES else decoded
        buffer = io.BytesIO()
        shown.save(buffer, "PNG", compress_level=1)  # made once, read once: speed over size
        return (*decoded.size, geometry[2]), buffer.getvalue()

    def close(self) -> None:
        self.rows.close()


def _png_has_exif(data: bytes) -> bool:
    """Whether a PNG has an eXIf chunk, from its chunk headers alone."""
    offset = 8  # the signature
    while offset + 8 <= len(data):
        length, kind = (
            int.from_bytes(data[offset : offset + 4], "big"),
            data[offset + 4 : offset + 8],
        )
        if kind == b"eXIf":
            return True
        if kind == b"IEND":
            return False
        offset += 12 + length  # length, type, data, CRC
    return False


@dataclass(frozen=True)
class PageText:
    """What hOCR and ALTO say of a page: the file it was read from (and its 1-based page
    number there), its size in the pixels its line boxes are in, their dpi, its lines."""

    source: str
    number: int
    width: int
    height: int
    dpi: int
    lines: list[dict]

    def area(self) -> tuple[int, int, int, int]:
        """The box around the page's lines (it has some)."""
        return (
            min(line["x0"] for line in self.lines),
            min(line["y0"] for line in self.lines),
            max(line["x1"] for line in self.lines),
            max(line["y1"] for line in self.lines),
        )
