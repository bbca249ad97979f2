"""`shardscribe export`: a committed page output (`run --segment lines`) as searchable
PDFs, hOCR or ALTO, shard by shard and one page in memory at a time. Every file is
written atomically (a temporary name then a rename, or one PUT), so a file that exists
is whole and a rerun writes only what is missing. A shard the run has not committed is
skipped and named; it is exported by a rerun once it is committed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import fsspec
import pikepdf
from pydantic import Field

from model.images import ImageDecodeError
from pipeline.config import (
    InputSettings,
    ProgressSettings,
    Section,
    StorageSettings,
)
from pipeline.errors import ConfigError, InputError, ShardReadError
from pipeline.export.alto import alto_page
from pipeline.export.hocr import hocr_page
from pipeline.export.pages import (
    ImageSource,
    PageRow,
    PageText,
    PdfSource,
    characters,
    page_rows,
    source_name,
)
from pipeline.export.pdf import images_pdf, searchable_pdf
from pipeline.failures import Failure, FailureClass
from pipeline.inputs.shards import Shard, discover_shards, shard_id
from pipeline.output.ledger import Ledger
from pipeline.output.listing import committed_files, not_an_output
from pipeline.output.sampling import recorded_input
from pipeline.run.interrupts import Stop, stop_on_signals
from pipeline.run.progress import Progress, rate_text
from pipeline.storage import join, open_filesystem, storage_access, write_atomically

log = logging.getLogger(__name__)
ExportFormat = Literal["pdf", "hocr", "alto"]
PAGE_FILES = {"hocr": (".hocr", hocr_page), "alto": (".xml", alto_page)}


class ExportSettings(Section):
    output: str = Field(min_length=1, description="The output of a `run --segment lines`.")
    to: ExportFormat = Field(
        description="pdf: one searchable PDF per input shard; hocr, alto: one file per page."
    )
    out: str = Field(min_length=1, description="Where the files go: a path or an fsspec URL.")
    input: str | None = Field(
        default=None,
        description="The run's input, if it moved since the run (default: the one recorded).",
    )
    storage: StorageSettings = Field(
        default_factory=StorageSettings, description="Credentials and endpoint for every URL."
    )
    progress: ProgressSettings = Field(
        default_factory=ProgressSettings, description="Progress lines when not on a terminal."
    )


class ExportInterrupted(Exception):
    """Ctrl-C or SIGTERM: what was written is whole; a rerun goes on from there."""

    def __init__(self, signum: int, exported: int, total: int):
        super().__init__(
            f"interrupted: {exported} of {total} shards exported; rerun the same command to resume"
        )
        self.exit_code = 128 + signum  # 130 for SIGINT, 143 for SIGTERM, as for `run`


@dataclass
class ExportSummary:
    shards_exported: int = 0  # shards this export wrote files of
    shards_unchanged: int = 0  # shards with nothing left to write (exported before)
    pages: int = 0  # pages written
    files: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # not committed: why
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.skipped or self.failed else 0

    def line(self) -> str:
        rate = self.pages / self.seconds if self.seconds else 0.0
        return (
            f"{self.shards_exported} shards exported, {self.shards_unchanged} already "
            f"exported, {len(self.skipped)} skipped (not committed), {len(self.failed)} "
            f"failed; {self.pages} pages in {self.files} files; {rate_text(rate)} pages/s "
            f"over {self.seconds:.1f}s"
        )


def export_output(settings: ExportSettings) -> ExportSummary:
    """Export every committed shard of `settings.output` not exported yet to `settings.out`."""
    started = time.monotonic()
    fs, root = open_filesystem(settings.output, settings.storage)
    with storage_access(settings.output):
        files = committed_files(fs, root)
        ledger = Ledger(fs, root)
        run, failures = ledger.read_run(), {f.shard: f.error for f in ledger.failures()}
    if not files:
        raise not_an_output(settings.output)
    reading = recorded_input(run, settings.input, settings.output)
    if reading.segment != "lines":
        raise ConfigError(
            f"output {settings.output} was not read with --segment lines: it has no line "
            "boxes to export"
        )
    input_fs, input_root = open_filesystem(reading.uri, settings.storage)
    exclude = root if type(input_fs) is type(fs) else None  # as `run`: an output in the input
    shards = discover_shards(input_fs, input_root, reading, exclude)
    summary = ExportSummary()
    for shard in shards:
        if shard.id not in files:
            summary.skipped[shard.id] = failures.get(shard.id, "not committed yet")
            log.warning("skipped shard %s: not committed (%s)", shard.id, summary.skipped[shard.id])
    for missing in sorted(set(files) - {shard.id for shard in shards}):
        summary.failed[missing] = f"input: no input shard {missing} under {reading.uri}"
        log.error("failed shard %s: %s", missing, summary.failed[missing])
    out_fs, out_root = open_filesystem(settings.out, settings.storage)
    exporter = _Exporter(settings.to, fs, input_fs, reading, out_fs, out_root)
    todo = [shard for shard in shards if shard.id in files]
    progress = Progress(len(todo), settings.progress.log_interval_s, unit="pages", done="exported")
    with stop_on_signals(0.0):
        try:
            for shard in todo:
                _export_shard(exporter, shard, files[shard.id], summary, progress)
        except Stop as stop:
            raise ExportInterrupted(stop.signum, progress.shards_done, len(todo)) from None
        finally:
            progress.close()
    summary.seconds = time.monotonic() - started
    return summary


def _export_shard(
    exporter: _Exporter, shard: Shard, path: str, summary: ExportSummary, progress: Progress
) -> None:
    try:
        pages, files = exporter.export(shard, path)
    except (OSError, ShardReadError, ImageDecodeError, pikepdf.PdfError) as error:
        summary.failed[shard.id] = str(_failure(error))
        log.error("failed shard %s: %s", shard.id, summary.failed[shard.id])
        progress.shard_failed()
        return
    summary.pages += pages
    summary.files += files
    if files:
        summary.shards_exported += 1
    else:
        summary.shards_unchanged += 1
    progress.shard_committed(pages)


def _failure(error: Exception) -> Failure:
    """Exporting reads the input again: a PDF qpdf cannot rewrite or a shard changed since
    the run is `input`, an image that no longer decodes `decode`; the store's errors are
    `storage`."""
    if isinstance(error, ImageDecodeError):
        return Failure(FailureClass.DECODE, str(error))
    if isinstance(error, OSError):
        return Failure(FailureClass.STORAGE, f"{type(error).__name__}: {error}")
    return Failure(FailureClass.INPUT, f"{type(error).__name__}: {error}")


def page_file_name(row: PageRow) -> str:
    """A page's file name without suffix: its key, cleaned as shard ids are (no '..', no
    absolute or backslashed parts), so a hostile key cannot write outside the folder."""
    try:
        return shard_id(row.key)
    except InputError:  # nothing usable left
        return f"row-{row.index:06d}"


@dataclass
class _Exporter:
    """Writes the files of one committed shard; returns (pages, files) written."""

    to: ExportFormat
    fs: fsspec.AbstractFileSystem  # the output's
    input_fs: fsspec.AbstractFileSystem
    reading: InputSettings
    out_fs: fsspec.AbstractFileSystem
    out_root: str

    def export(self, shard: Shard, path: str) -> tuple[int, int]:
        if self.to == "pdf":
            return self._pdf(shard, path)
        return self._page_files(shard, path)

    def _pdf(self, shard: Shard, path: str) -> tuple[int, int]:
        target = join(self.out_root, f"{shard.id}.pdf")
        if self.out_fs.exists(target):
            return 0, 0
        chars, rows = characters(self.fs, path), page_rows(self.fs, path)
        source = self._source(shard)
        try:
            if isinstance(source, PdfSource):
                data, pages = searchable_pdf(source, rows, chars, self.reading.pdf_dpi)
            else:
                data, pages = images_pdf(shard.id, source, rows, chars)
        finally:
            source.close()
        if not pages:
            return 0, 0
        write_atomically(self.out_fs, target, data)
        return pages, 1

    def _page_files(self, shard: Shard, path: str) -> tuple[int, int]:
        suffix, render = PAGE_FILES[self.to]
        folder = join(self.out_root, shard.id)
        existing = self._existing(folder)
        source: PdfSource | ImageSource | None = None
        written = 0
        try:
            for row in page_rows(self.fs, path):
                target = join(folder, page_file_name(row) + suffix)
                if target in existing:
                    continue
                if row.lines is None:
                    log.warning(
                        "%s/%s: no file, the run could not read it (%s)",
                        shard.id,
                        row.key,
                        row.error,
                    )
                    continue
                source = source or self._source(shard)
                write_atomically(self.out_fs, target, render(self._page_text(source, shard, row)))
                written += 1
        finally:
            if source is not None:
                source.close()
        return written, written

    def _existing(self, folder: str) -> set[str]:
        try:
            return set(self.out_fs.find(folder))
        except FileNotFoundError:
            return set()

    def _source(self, shard: Shard) -> PdfSource | ImageSource:
        if shard.format == "pdf":
            return PdfSource(self.input_fs, shard)
        return ImageSource(self.input_fs, shard, self.reading)

    def _page_text(self, source: PdfSource | ImageSource, shard: Shard, row: PageRow) -> PageText:
        if isinstance(source, PdfSource):
            dpi = self.reading.pdf_dpi
            width, height = source.frame(row.index).pixels(dpi)
            return PageText(source_name(shard), row.index + 1, width, height, dpi, row.lines)
        return PageText(row.key, 1, *source.geometry(row.key), row.lines)
