"""`shardscribe export`: a committed page output (`run --segment lines`) as searchable
PDFs, hOCR or ALTO, shard by shard and one page in memory at a time. Every file is
written atomically (a temporary name then a rename, or one PUT), and the same output
gives the same bytes, so a file that exists is whole and a rerun, after a kill too,
writes only what is missing. A shard the run has not committed is skipped and named; it
is exported by a rerun once it is committed. An input file that is not the one the run
read (its size and version, as the run recorded them) fails its shard, named; the
store's passing errors are retried as `run` retries them (`retry` settings), and a store
that refuses to be written stops the export at once."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import fsspec
import pikepdf
import pyarrow.parquet as pq
from pydantic import Field

from model.images import ImageDecodeError
from pipeline.exceptions import ConfigError, InputError, ShardReadError, StorageAccessError
from pipeline.export.alto import alto_page
from pipeline.export.committed_pages import (
    ImageSource,
    PageRow,
    PageText,
    PdfSource,
    characters,
    page_rows,
    source_name,
)
from pipeline.export.hocr import hocr_page
from pipeline.export.searchable_pdf import images_pdf, searchable_pdf
from pipeline.failures import Failure, FailureClass
from pipeline.inputs.shards import Shard, discover_shards, shard_id
from pipeline.inputs.stamps import changed_files
from pipeline.job_config import (
    InputSettings,
    ProgressSettings,
    RetrySettings,
    Section,
    StorageSettings,
)
from pipeline.output.layout import INPUTS_KEY
from pipeline.output.ledger import Ledger
from pipeline.output.listing import committed_files, not_an_output
from pipeline.output.sampling import recorded_input
from pipeline.run.interrupts import Stop, stop_on_signals
from pipeline.run.progress import Progress, rate_text
from pipeline.storage import (
    absolute_url,
    access_problem,
    is_retryable,
    join,
    open_filesystem,
    storage_access,
    write_atomically,
)

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
    force_text_layer: bool = Field(
        default=False,
        description="pdf: lay the run's text over pages that draw text of their own as well "
        "(they then hold it twice); by default such pages are left as they are.",
    )
    storage: StorageSettings = Field(
        default_factory=StorageSettings, description="Credentials and endpoint for every URL."
    )
    retry: RetrySettings = Field(
        default_factory=RetrySettings,
        description="How a shard the store failed for a moment is tried again (as `run`).",
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
    pages_left_alone: int = 0  # PDF pages with text of their own, given no layer
    layers_replaced: int = 0  # PDF pages whose earlier OCR layer the run's text replaced
    retries: int = 0
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
            f"failed; {self.pages} pages in {self.files} files ({self.pages_left_alone} left "
            f"as they were: text of their own; {self.layers_replaced} earlier OCR layers "
            f"replaced); {rate_text(rate)} pages/s over {self.seconds:.1f}s"
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
    moved = settings.input is not None and (run or {}).get("input") != absolute_url(reading.uri)
    exporter = _Exporter(settings, fs, input_fs, reading, out_fs, out_root, moved)
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
    """Export one shard, tried again after the store's passing errors as `run` does."""
    retry = exporter.settings.retry
    for attempt in range(1, retry.max_attempts + 1):
        try:
            written = exporter.export(shard, path)
            break
        except OSError as error:
            if not is_retryable(error) or attempt == retry.max_attempts:
                _failed(shard, error, summary, progress)
                return
            delay = min(retry.backoff_s * 2 ** (attempt - 1), retry.backoff_max_s)
            log.warning("retrying shard %s in %.1fs: %s", shard.id, delay, _failure(error))
            summary.retries += 1
            time.sleep(delay)
        except (ShardReadError, ImageDecodeError, pikepdf.PdfError) as error:
            _failed(shard, error, summary, progress)
            return
    summary.pages += written.pages
    summary.files += written.files
    summary.pages_left_alone += written.left_alone
    summary.layers_replaced += written.replaced
    if written.files:
        summary.shards_exported += 1
    else:
        summary.shards_unchanged += 1
    progress.shard_committed(written.pages)


def _failed(shard: Shard, error: Exception, summary: ExportSummary, progress: Progress) -> None:
    summary.failed[shard.id] = str(_failure(error))
    log.error("failed shard %s: %s", shard.id, summary.failed[shard.id])
    progress.shard_failed()


def _failure(error: Exception) -> Failure:
    """Exporting reads the input again: a PDF qpdf cannot rewrite or a shard changed since
    the run is `input`, an image that no longer decodes `decode`; the store's errors are
    `storage`."""
    if isinstance(error, ImageDecodeError):
        return Failure(FailureClass.DECODE, str(error))
    if isinstance(error, OSError):
        return Failure(FailureClass.STORAGE, f"{type(error).__name__}: {error}")
    if isinstance(error, ShardReadError):
        return Failure(FailureClass.INPUT, str(error))
    return Failure(FailureClass.INPUT, f"{type(error).__name__}: {error}")


def page_file_name(row: PageRow) -> str:
    """A page's file name without suffix: its key, cleaned as shard ids are (no '..', no
    absolute or backslashed parts), so a hostile key cannot write outside the folder."""
    try:
        return shard_id(row.key)
    except InputError:  # nothing usable left
        return f"row-{row.index:06d}"


@dataclass
class Written:
    """What exporting one shard wrote: pages and files, and of its PDF pages those left as
    they were and those whose earlier OCR layer was replaced."""

    pages: int = 0
    files: int = 0
    left_alone: int = 0
    replaced: int = 0


@dataclass
class _Exporter:
    """Writes the files of one committed shard."""

    settings: ExportSettings
    fs: fsspec.AbstractFileSystem  # the output's
    input_fs: fsspec.AbstractFileSystem
    reading: InputSettings
    out_fs: fsspec.AbstractFileSystem
    out_root: str
    moved: bool  # the input is not where the run read it: sizes are compared, not versions

    def export(self, shard: Shard, path: str) -> Written:
        if self.settings.to == "pdf":
            return self._pdf(shard, path)
        return self._page_files(shard, path)

    def _pdf(self, shard: Shard, path: str) -> Written:
        target = join(self.out_root, f"{shard.id}.pdf")
        if self.out_fs.exists(target):
            return Written()
        self._check_input(shard, path)
        chars, rows = characters(self.fs, path), page_rows(self.fs, path)
        source = self._source(shard)
        try:
            if isinstance(source, PdfSource):
                force = self.settings.force_text_layer
                data, pages = searchable_pdf(source, rows, chars, self.reading.pdf_dpi, force)
            else:
                data, pages = images_pdf(shard.id, source, rows, chars)
        finally:
            source.close()
        if not pages.pages:
            return Written()
        self._write(target, data)
        return Written(pages.pages, 1, pages.left_alone, pages.replaced)

    def _page_files(self, shard: Shard, path: str) -> Written:
        suffix, render = PAGE_FILES[self.settings.to]
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
                if source is None:
                    self._check_input(shard, path)
                    source = self._source(shard)
                self._write(target, render(self._page_text(source, shard, row)))
                written += 1
        finally:
            if source is not None:
                source.close()
        return Written(written, written)

    def _check_input(self, shard: Shard, path: str) -> None:
        """Refuse an input that is not what the run read (outputs from before runs recorded
        their inputs are checked by their page counts alone)."""
        with self.fs.open(path, "rb") as handle:
            metadata = pq.read_schema(handle).metadata or {}
        if INPUTS_KEY not in metadata:
            return
        recorded = json.loads(metadata[INPUTS_KEY])
        changed = changed_files(
            self.input_fs, recorded, shard.paths, shard.stamps, shard.root, self.moved
        )
        if changed:
            named = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" * bool(changed[3:]))
            raise ShardReadError(
                f"{named} changed since the run read it: its text would land on other pages; "
                "restore the file, or read it again with `shardscribe run` into a new output"
            )

    def _write(self, target: str, data: bytes) -> None:
        """Write a file; a store that refuses it stops the export (every file would be)."""
        try:
            write_atomically(self.out_fs, target, data)
        except PermissionError as error:
            problem = access_problem(self.settings.out, error) or str(error)
            raise StorageAccessError(f"cannot write the export: {problem}") from None

    def _existing(self, folder: str) -> set[str]:
        try:
            return set(self.out_fs.find(folder))
        except FileNotFoundError:
            return set()

    def _source(self, shard: Shard) -> PdfSource | ImageSource:
        if shard.format == "pdf":
            return PdfSource(self.input_fs.cat_file(shard.paths[0]))
        return ImageSource(self.input_fs, shard, self.reading)

    def _page_text(self, source: PdfSource | ImageSource, shard: Shard, row: PageRow) -> PageText:
        if isinstance(source, PdfSource):
            dpi = self.reading.pdf_dpi
            width, height = source.frame(row.index).pixels(dpi)
            return PageText(source_name(shard), row.index + 1, width, height, dpi, row.lines)
        return PageText(row.key, 1, *source.geometry(row.key), row.lines)
