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
from PIL import ExifTags, Image

from model.images import ImageDecodeError, decode_image
from pipeline.config import InputSettings
from pipeline.errors import ShardReadError
from pipeline.export.geometry import Frame, image_dpi, page_frame
from pipeline.inputs.readers import read_source_rows
from pipeline.inputs.shards import Shard

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
    text_source: str | None  # "pdf": the PDF's own text layer (--pdf-text-layer prefer)


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
    """An input PDF, open for its page frames and to be copied (qpdf, through pikepdf,
    reads its objects when they are needed)."""

    def __init__(self, fs: fsspec.AbstractFileSystem, shard: Shard):
        self.file = fs.open(shard.paths[0], "rb")
        try:
            self.pdf = pikepdf.Pdf.open(self.file)
        except pikepdf.PdfError as error:
            self.file.close()
            raise ShardReadError(f"cannot open the PDF: {error}") from None

    def frame(self, index: int) -> Frame:
        if index >= len(self.pdf.pages):
            raise ShardReadError(
                f"the PDF has {len(self.pdf.pages)} pages, its output more rows: the PDF "
                "changed since the run"
            )
        return page_frame(self.pdf.pages[index])

    def close(self) -> None:
        self.pdf.close()
        self.file.close()


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
        """The file opened (a JPEG's header read, no pixels decoded; a PNG's EXIF may follow
        its pixels, so Pillow decodes it to find out) and its EXIF orientation."""
        try:
            opened = Image.open(io.BytesIO(self._data(key)))
        except (OSError, Image.UnidentifiedImageError) as error:
            raise ImageDecodeError(f"cannot decode image: {error}") from None
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

    def shown(self, key: str) -> tuple[tuple[int, int, int], Image.Image | io.BytesIO]:
        """The page's geometry, and what a PDF page shows of it: a JPEG file as it is and a
        PNG as Pillow opened it, when they need no turning (fpdf2 takes both without
        another decode), else the pixels the run decoded, grey when the file is."""
        opened, orientation = self._opened(key)
        geometry = (*opened.size, image_dpi(opened))
        if orientation == 1 and (opened.format, opened.mode) in AS_THEY_ARE:
            return geometry, io.BytesIO(self._data(key)) if opened.format == "JPEG" else opened
        decoded = self.image(key)
        shown = decoded.convert("L") if opened.mode in GREY_MODES else decoded
        return (*decoded.size, geometry[2]), shown

    def close(self) -> None:
        self.rows.close()


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
