"""A seeded sample of an output's committed rows, joined back to their input images
(`shardscribe preview`). Shards are chosen from their footers first, then rows are read
one shard at a time and only the columns shown, so a huge output is never read whole."""

from __future__ import annotations

import random
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from model.images import ImageDecodeError, decode_image
from pipeline.exceptions import ConfigError, ShardReadError
from pipeline.inputs.readers import SourceRows, read_source_rows
from pipeline.inputs.shards import Shard, discover_shards
from pipeline.job_config import InputSettings, StorageSettings
from pipeline.output.commit import BASE_SCHEMA
from pipeline.output.ledger import Ledger
from pipeline.output.listing import committed_files, footer_counts, not_an_output
from pipeline.storage import open_filesystem, storage_access

LABEL_COLUMNS = ("score", "label_prob")
# A reference text the input carried: a WebDataset .txt sidecar, a Parquet column `text`.
REFERENCE_COLUMNS = ("txt", "input_text")
THUMBNAIL_SIDE = 256
PAGE_SIDE = 900  # pages are shown large enough to read their line boxes
FOOTER_READERS = 16


@dataclass
class SampledRow:
    shard: str
    key: str
    text: str | None
    error: str | None
    score: float | None = None
    label_prob: float | None = None
    lines: list[dict] | None = None  # a page's lines: box in page pixels, text
    reference: str | None = None  # the text the input says the image holds
    thumbnail: Image.Image | None = None
    image_size: tuple[int, int] | None = None  # the input image's, which boxes refer to
    missing_image: str | None = None  # why there is no thumbnail


def preview_rows(
    output_uri: str,
    storage: StorageSettings,
    count: int,
    seed: int,
    errors_only: bool = False,
    input_uri: str | None = None,
) -> list[SampledRow]:
    """`count` committed rows (only rows with an error if `errors_only`), the same for the
    same seed, each with a thumbnail of its input image or the reason it has none."""
    if count < 1:
        raise ConfigError(f"the sample size must be at least 1, not {count}")
    fs, root = open_filesystem(output_uri, storage)
    with storage_access(output_uri):
        files = committed_files(fs, root)
    if not files:
        raise not_an_output(output_uri)
    rows = sample_rows(fs, files, count, seed, errors_only)
    if rows:
        settings = recorded_input(Ledger(fs, root).read_run(), input_uri, output_uri)
        input_fs, input_root = open_filesystem(settings.uri, storage)
        # As `run` does: an output inside the input is not input.
        exclude = root if type(input_fs) is type(fs) else None
        shards = discover_shards(input_fs, input_root, settings, exclude)
        attach_thumbnails(rows, input_fs, shards, settings)
    return rows


def sample_rows(
    fs: fsspec.AbstractFileSystem,
    files: dict[str, str],
    count: int,
    seed: int,
    errors_only: bool,
) -> list[SampledRow]:
    """Rows spread as evenly as possible over shards visited in a seeded order, sorted by
    shard and row."""
    order = random.Random(seed).sample(sorted(files), len(files))
    eligible = _eligible_rows(fs, files, order, count, errors_only)
    rows = []
    for shard_id, quota in sorted(_spread(eligible, count).items()):
        shard_seed = f"{seed}:{shard_id}"  # a shard's choice does not depend on the others
        rows += _read_sample(fs, files[shard_id], quota, errors_only, shard_seed)
    return rows


def _eligible_rows(
    fs: fsspec.AbstractFileSystem,
    files: dict[str, str],
    order: list[str],
    count: int,
    errors_only: bool,
) -> dict[str, int]:
    """{shard id: rows it can give}, in `order`, for just enough shards: at least `count`
    of them (one row each at best) and at least `count` rows in all."""
    eligible: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=FOOTER_READERS) as pool:
        for start in range(0, len(order), FOOTER_READERS):
            chunk = order[start : start + FOOTER_READERS]
            counts = pool.map(lambda shard_id: footer_counts(fs, files[shard_id]), chunk)
            for shard_id, (rows, errors) in zip(chunk, counts, strict=True):
                eligible[shard_id] = errors if errors_only else rows
            if len(eligible) >= count and sum(eligible.values()) >= count:
                break
    return eligible


def _spread(eligible: dict[str, int], count: int) -> dict[str, int]:
    """Rows to take per shard: the same number from each where the shards allow it, the
    remainder from the earliest shards in `eligible`'s (seeded) order."""
    target = min(count, sum(eligible.values()))
    level = 0
    while sum(min(rows, level) for rows in eligible.values()) < target:
        level += 1
    quotas = {shard_id: min(rows, max(level - 1, 0)) for shard_id, rows in eligible.items()}
    remainder = target - sum(quotas.values())
    for shard_id, rows in eligible.items():
        if remainder and rows >= level:
            quotas[shard_id] += 1
            remainder -= 1
    return {shard_id: quota for shard_id, quota in quotas.items() if quota}


def _read_sample(
    fs: fsspec.AbstractFileSystem, path: str, quota: int, errors_only: bool, seed: str
) -> list[SampledRow]:
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        table = parquet.read(columns=_shown_columns(parquet.schema_arrow))
    errors = table.column("error").to_pylist()
    candidates = [i for i, error in enumerate(errors) if error is not None or not errors_only]
    chosen = sorted(random.Random(seed).sample(candidates, min(quota, len(candidates))))
    reference = next((name for name in REFERENCE_COLUMNS if name in table.column_names), None)
    rows = []
    for row in table.take(chosen).to_pylist():
        given = row.pop(reference) if reference else None
        rows.append(SampledRow(**row, reference=given))
    return rows


def _shown_columns(schema: pa.Schema) -> list[str]:
    """The base columns, the labeling ones present, a page's lines and the reference text;
    a passthrough column that happens to share a name but not the type is left out."""

    def typed(name: str, check) -> bool:
        return name in schema.names and check(schema.field(name).type)

    labels = [name for name in LABEL_COLUMNS if typed(name, pa.types.is_floating)]
    lines = ["lines"] if typed("lines", pa.types.is_list) else []
    reference = [name for name in REFERENCE_COLUMNS if typed(name, pa.types.is_string)][:1]
    return [*BASE_SCHEMA.names, *labels, *lines, *reference]


def recorded_input(run: dict | None, input_uri: str | None, output_uri: str) -> InputSettings:
    """The input the output was made from (or `input_uri`), read with the recorded settings
    (format, image and key columns, images per shard), so keys come out the same."""
    uri = input_uri or (run or {}).get("input")
    if not uri:
        raise ConfigError(f"output {output_uri} records no input; name it with --input")
    reading = (run or {}).get("settings", {}).get("input", {})
    return InputSettings.model_validate({**reading, "uri": uri})


def attach_thumbnails(
    rows: list[SampledRow],
    fs: fsspec.AbstractFileSystem,
    shards: list[Shard],
    settings: InputSettings,
) -> None:
    """Give each row a thumbnail of its input image (a page: larger, to show its lines),
    reading each input shard once and only the images sampled (a PDF renders only the
    sampled pages, and renders them even where a text layer was used)."""
    settings = settings.model_copy(update={"pdf_text_layer": "ignore"})
    shards_by_id = {shard.id: shard for shard in shards}
    by_shard: dict[str, list[SampledRow]] = defaultdict(list)
    for row in rows:
        by_shard[row.shard].append(row)
    for shard_id, shard_rows in by_shard.items():
        source = _shard_source(fs, shards_by_id.get(shard_id), settings)
        if isinstance(source, str):
            for row in shard_rows:
                row.missing_image = source
            continue
        try:
            positions = {key: i for i, key in enumerate(source.keys)}
            for row in shard_rows:
                _attach(row, source, positions.get(row.key), settings.max_image_pixels)
        finally:
            source.close()


def _shard_source(
    fs: fsspec.AbstractFileSystem, shard: Shard | None, settings: InputSettings
) -> SourceRows | str:
    """The input shard's rows, or why the whole shard has none (its rows still get cards)."""
    if shard is None:
        return f"input shard not found under {settings.uri}"
    try:
        return read_source_rows(fs, shard, settings)
    except (ShardReadError, OSError) as error:
        return f"cannot read the input shard: {error}"


def _attach(row: SampledRow, source: SourceRows, position: int | None, max_pixels) -> None:
    if position is None:
        row.missing_image = "key not found in the input shard"
        return
    if source.errors[position] is not None:
        row.missing_image = source.errors[position]
        return
    try:
        image = source.images[position]
        if not isinstance(image, Image.Image):
            if not image:
                row.missing_image = "no image bytes"
                return
            image = decode_image(image, max_pixels)
    except ImageDecodeError as error:
        row.missing_image = str(error)
        return
    row.image_size = image.size
    side = PAGE_SIDE if row.lines is not None else THUMBNAIL_SIDE
    image.thumbnail((side, side))
    row.thumbnail = image
