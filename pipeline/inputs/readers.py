"""Read one shard into source rows: key, image bytes, passthrough columns.

Each reader returns a `SourceRows`; row-level problems (a key without an image, a
duplicate key) become row errors, shard-level ones (a truncated tar, a missing
image column) raise `ShardReadError`.
"""

from __future__ import annotations

import gzip
import posixpath
import tarfile
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.exceptions import ShardReadError
from pipeline.inputs.pdf import PdfPages, page_key
from pipeline.inputs.shards import IMAGE_EXTENSIONS, Shard
from pipeline.storage import open_listed

SIDECAR_EXTENSIONS = ("json", "txt", "cls")
# Passthrough columns may not shadow the output's own columns.
RESERVED_COLUMNS = frozenset({"shard", "key", "text", "error"})


@dataclass
class SourceRows:
    """A shard's rows. `images` holds encoded bytes, or for PDFs the pages, rendered
    when indexed (an unreadable page raises ImageDecodeError then)."""

    keys: list[str]
    images: Sequence[bytes | None] | PdfPages
    errors: list[str | None]
    passthrough: pa.Table | None = None

    def close(self) -> None:
        if isinstance(self.images, PdfPages):
            self.images.close()


def read_source_rows(fs: fsspec.AbstractFileSystem, shard: Shard, input_settings) -> SourceRows:
    readers = {
        "webdataset": read_webdataset,
        "parquet": read_parquet,
        "images": read_images,
        "pdf": read_pdf,
    }
    rows = readers[shard.format](fs, shard, input_settings)
    return _mark_duplicate_keys(rows)


def _mark_duplicate_keys(rows: SourceRows) -> SourceRows:
    """Keys must be unique per shard: a repeat keeps its row but gets '#<n>' and an error."""
    counts = Counter(rows.keys)
    if all(count == 1 for count in counts.values()):
        return rows
    seen: Counter[str] = Counter()
    for i, key in enumerate(rows.keys):
        seen[key] += 1
        if seen[key] > 1:
            rows.keys[i] = f"{key}#{seen[key]}"
            rows.errors[i] = f"duplicate key {key!r} in shard (occurrence {seen[key]})"
            rows.images[i] = None
    return rows


def _split_member(name: str) -> tuple[str, str] | None:
    """WebDataset naming: 'dir/base.ext.ext2' -> key 'dir/base', extension 'ext.ext2'."""
    name = name.removeprefix("./")
    directory, base = posixpath.split(name)
    if base.startswith(".") or "." not in base:
        return None
    stem, extension = base.split(".", 1)
    return posixpath.join(directory, stem), extension.lower()


def read_webdataset(fs: fsspec.AbstractFileSystem, shard: Shard, _settings) -> SourceRows:
    """Group consecutive tar members by key (WebDataset keeps a sample's members
    together); the image is the member with an image extension, .json/.txt/.cls members
    become string columns named by their extension. A key that comes back later, or a
    repeated member, starts a new sample: it gets its own row, flagged as a duplicate."""
    samples: list[tuple[str, dict[str, bytes]]] = []
    try:
        raw = open_listed(fs, shard.paths[0], shard.size)
        with raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                parsed = _split_member(member.name) if member.isfile() else None
                if parsed is None:
                    continue
                key, extension = parsed
                if not samples or samples[-1][0] != key or extension in samples[-1][1]:
                    samples.append((key, {}))
                samples[-1][1][extension] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ShardReadError(f"corrupt or truncated tar: {type(error).__name__}: {error}") from None
    keys, images, errors = [], [], []
    sidecars: dict[str, list[str | None]] = {ext: [] for ext in SIDECAR_EXTENSIONS}
    for key, sample in samples:
        image_ext = next((ext for ext in sample if ext in IMAGE_EXTENSIONS), None)
        keys.append(key)
        images.append(sample.get(image_ext) if image_ext else None)
        errors.append(None if image_ext else f"no image member (found: {', '.join(sample)})")
        for ext, values in sidecars.items():
            value = sample.get(ext)
            values.append(None if value is None else value.decode("utf-8", errors="replace"))
    present = {
        ext: pa.array(v, pa.string())
        for ext, v in sidecars.items()
        if any(x is not None for x in v)
    }
    return SourceRows(keys, images, errors, pa.table(present) if present else None)


def _is_image_type(data_type: pa.DataType) -> bool:
    if pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type):
        return True
    if pa.types.is_struct(data_type):
        index = data_type.get_field_index("bytes")
        return index >= 0 and _is_image_type(data_type.field(index).type)
    return False


def _image_column(schema: pa.Schema, wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in schema.names:
            raise ShardReadError(f"image column {wanted!r} not found; columns: {schema.names}")
        if not _is_image_type(schema.field(wanted).type):
            raise ShardReadError(
                f"image column {wanted!r} has type {schema.field(wanted).type}, expected binary "
                "or struct<bytes: binary, path: string>"
            )
        return wanted
    candidates = [f.name for f in schema if _is_image_type(f.type)]
    if len(candidates) == 1:
        return candidates[0]
    preferred = [name for name in ("image", "img", "jpg", "png") if name in candidates]
    if preferred:
        return preferred[0]
    if not candidates:
        raise ShardReadError(
            f"no image column (binary or struct<bytes, path>) among columns {schema.names}; "
            "set input.image_column (--image-column)"
        )
    raise ShardReadError(
        f"several image columns {candidates}; choose one with input.image_column (--image-column)"
    )


def read_parquet(fs: fsspec.AbstractFileSystem, shard: Shard, settings) -> SourceRows:
    """Image bytes from the image column; every other column passes through unchanged."""
    try:
        with open_listed(fs, shard.paths[0], shard.size) as raw:
            table = pq.read_table(raw)
    except pa.ArrowInvalid as error:
        raise ShardReadError(f"not a readable Parquet file: {error}") from None
    image_name = _image_column(table.schema, settings.image_column)
    column = table.column(image_name)
    if pa.types.is_struct(column.type):  # Hugging Face datasets' Image: {bytes, path}
        column = pc.struct_field(column, "bytes")
    images = column.to_pylist()
    if settings.key_column is not None:
        if settings.key_column not in table.column_names:
            raise ShardReadError(
                f"key column {settings.key_column!r} not found; columns: {table.column_names}"
            )
        keys = [
            str(i) if value is None else str(value)
            for i, value in enumerate(table.column(settings.key_column).to_pylist())
        ]
    else:
        keys = [str(i) for i in range(table.num_rows)]
    errors = [None if image else "no image bytes in this row" for image in images]
    passthrough = table.drop_columns([image_name])
    passthrough = passthrough.rename_columns(
        [f"input_{n}" if n in RESERVED_COLUMNS else n for n in passthrough.column_names]
    )
    return SourceRows(keys, images, errors, passthrough)


def read_images(fs: fsspec.AbstractFileSystem, shard: Shard, _settings) -> SourceRows:
    """Image files fetched concurrently; the key is the path relative to the input root."""
    fetched = fs.cat(list(shard.paths), on_error="return")
    keys, images, errors = [], [], []
    for path in shard.paths:
        data = fetched.get(path) if isinstance(fetched, dict) else fetched
        keys.append(posixpath.relpath(path, shard.root))
        if isinstance(data, BaseException):
            if not isinstance(data, (FileNotFoundError, PermissionError)):
                raise data
            images.append(None)
            errors.append(f"cannot read {keys[-1]}: {type(data).__name__}: {data}")
        else:
            images.append(data)
            errors.append(None)
    return SourceRows(keys, images, errors)


def read_pdf(fs: fsspec.AbstractFileSystem, shard: Shard, settings) -> SourceRows:
    """One row per page, keyed page-0001, ...; the page number is the column `page`."""
    pages = PdfPages(
        open_listed(fs, shard.paths[0], shard.size),
        settings.pdf_dpi,
        settings.max_image_pixels,
        text_layer=settings.pdf_text_layer,
    )
    count = len(pages)
    return SourceRows(
        [page_key(i) for i in range(count)], pages, [None] * count, pages.passthrough()
    )
