"""Shards: the unit of work, retry, commit and progress. Discovery under an input URL."""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import fsspec

from pipeline.exceptions import InputError
from pipeline.inputs.stamps import listed_stamp
from pipeline.job_config import InputSettings
from pipeline.storage import storage_access

IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm", "pgm", "pbm"}
)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)  # a million of them in a large run
class Shard:
    """One unit of work: a tar, a Parquet file, a PDF, or a group of image files."""

    id: str
    format: str
    paths: tuple[str, ...]
    root: str
    size: int = 0  # bytes of its files, as listed: how the plan packs small shards
    stamps: tuple[str, ...] = ()  # each file's size and version, as listed (`stamps.py`)

    def to_item(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "format": self.format,
            "paths": list(self.paths),
            "root": self.root,
            "size": self.size,
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Shard:
        return cls(item["id"], item["format"], tuple(item["paths"]), item["root"], item["size"])


def shard_id(relative_path: str) -> str:
    """The id of a shard: its path relative to the input root without extension.

    Object names are untrusted: percent-encoding is decoded first (so '%2e%2e' is
    '..'), then '..', '.', empty parts, backslashes and control characters are removed
    or replaced, so `<output>/<id>.parquet` stays inside the output. The result is
    deterministic, so reruns find the same ids.
    """
    parts = [
        _CONTROL_CHARS.sub("_", part)
        for part in unquote(relative_path).replace("\\", "/").split("/")
        if part not in ("", ".", "..")
    ]
    if not parts:
        raise InputError(f"shard path {relative_path!r} leaves no usable name")
    last = parts[-1]
    for suffix in (*TAR_SUFFIXES, ".parquet", ".pdf"):
        if last.lower().endswith(suffix) and len(last) > len(suffix):
            parts[-1] = last[: -len(suffix)]
            break
    return "/".join(parts)


def _extension(path: str) -> str:
    return posixpath.basename(path).rsplit(".", 1)[-1].lower() if "." in path else ""


def _kind(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(TAR_SUFFIXES):
        return "webdataset"
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith(".pdf"):
        return "pdf"
    if _extension(path) in IMAGE_EXTENSIONS:
        return "images"
    return None


def _is_hidden(relative_path: str) -> bool:
    """Dot- and underscore-names (ledgers, _SUCCESS markers, .DS_Store) are not input."""
    return any(part.startswith((".", "_")) for part in relative_path.split("/"))


def list_input_files(
    fs: fsspec.AbstractFileSystem, root: str, uri: str
) -> dict[str, tuple[str, int, str]]:
    """{relative path: (full path, bytes, stamp)} of every visible file under root (or
    root itself). Sizes and versions come with the listing, at no extra request."""
    fs.invalidate_cache()  # another process may have written since we last listed
    with storage_access(uri):
        try:
            if fs.isfile(root):
                info = fs.info(root)
                return {posixpath.basename(root): (root, info["size"], listed_stamp(info))}
            found = fs.find(root, withdirs=False, detail=True)
        except FileNotFoundError:  # no such path, or no such bucket
            found = {}
    prefix = root.rstrip("/") + "/"
    if not found:
        raise InputError(f"input {uri} does not exist or is empty")
    return {
        path[len(prefix) :]: (path, info.get("size") or 0, listed_stamp(info))
        for path, info in found.items()
        if path.startswith(prefix) and not _is_hidden(path[len(prefix) :])
    }


def discover_shards(
    fs: fsspec.AbstractFileSystem,
    root: str,
    settings: InputSettings,
    exclude: str | None = None,
) -> list[Shard]:
    """Every shard under the input, sorted by id. Image folders are grouped per directory
    into shards of `images_per_shard` files by sorted path, so membership is stable.
    Files under `exclude` (an output inside the input) are not input."""
    files = list_input_files(fs, root, settings.uri)
    if exclude is not None:
        inside = exclude.rstrip("/") + "/"
        files = {rel: file for rel, file in files.items() if not file[0].startswith(inside)}
    by_kind: dict[str, list[str]] = defaultdict(list)
    for rel in sorted(files):
        kind = _kind(rel)
        if kind:
            by_kind[kind].append(rel)
    fmt = settings.format
    if fmt == "auto":
        if len(by_kind) != 1:
            found = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items())) or "no shards"
            raise InputError(
                f"input {settings.uri}: cannot pick a format automatically (found {found}); "
                "set input.format (--format webdataset|parquet|images|pdf)"
            )
        (fmt,) = by_kind
    if not by_kind.get(fmt):
        raise InputError(f"input {settings.uri} holds no {fmt} shards")
    if fmt == "images":
        shards = _image_shards(by_kind[fmt], files, root, settings.images_per_shard)
    else:
        shards = [
            Shard(shard_id(rel), fmt, (files[rel][0],), root, files[rel][1], (files[rel][2],))
            for rel in by_kind[fmt]
        ]
    _refuse_duplicate_ids(shards)
    return sorted(shards, key=lambda s: s.id)


def _image_shards(
    rels: list[str], files: dict[str, tuple[str, int, str]], root: str, size: int
) -> list[Shard]:
    by_dir: dict[str, list[str]] = defaultdict(list)
    for rel in rels:
        by_dir[posixpath.dirname(rel)].append(rel)
    shards = []
    for directory, members in by_dir.items():
        for start in range(0, len(members), size):
            name = f"part-{start // size:05d}"
            group = [files[rel] for rel in members[start : start + size]]
            paths = tuple(path for path, _, _ in group)
            bytes_ = sum(file_size for _, file_size, _ in group)
            stamps = tuple(stamp for _, _, stamp in group)
            shard = Shard(
                shard_id(posixpath.join(directory, name)), "images", paths, root, bytes_, stamps
            )
            shards.append(shard)
    return shards


def _refuse_duplicate_ids(shards: list[Shard]) -> None:
    seen: dict[str, Shard] = {}
    for shard in shards:
        if shard.id in seen:
            raise InputError(
                f"two shards map to the same id {shard.id!r}: {seen[shard.id].paths[0]} and "
                f"{shard.paths[0]}; rename one of them"
            )
        seen[shard.id] = shard
