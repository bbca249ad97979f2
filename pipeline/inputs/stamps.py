"""What a run read of each input file, so that a later step (`export`) can tell the file
it finds is the one the run read: its size and the version the store gives it (an
object's ETag, a file's modification time), or, from a store that gives neither, a
SHA-256 of its bytes."""

from __future__ import annotations

import hashlib
import posixpath
from typing import Any

import fsspec

VERSION_KEYS = ("ETag", "etag", "md5Hash", "generation")  # S3, GCS, ...: the content's
TIME_KEYS = ("mtime", "LastModified", "last_modified", "updated")  # else when it was written
DIGEST = "sha256"


def listed_stamp(info: dict[str, Any]) -> str:
    """A file's stamp from what its listing says: '<size> etag <etag>', '<size> mtime
    <time>', or '<size>' alone when the store says neither (a digest is taken then)."""
    size = info.get("size") or 0
    for key in VERSION_KEYS:
        if info.get(key):
            return f"{size} etag {str(info[key]).strip(chr(34))}"
    for key in TIME_KEYS:
        if info.get(key) is not None:
            return f"{size} mtime {info[key]}"
    return str(size)


def digest_stamp(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """'<size> sha256 <hex digest>' of the file's bytes, read in blocks."""
    digest, size = hashlib.sha256(), 0
    with fs.open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
            size += len(block)
    return f"{size} {DIGEST} {digest.hexdigest()}"


def shard_stamps(
    fs: fsspec.AbstractFileSystem, paths: tuple[str, ...], stamps: tuple[str, ...], root: str
) -> dict[str, str]:
    """{path under the input root: stamp} of a shard's files, a digest where the listing
    gave no version."""
    return {
        _relative(path, root): stamp if " " in stamp else digest_stamp(fs, path)
        for path, stamp in zip(paths, stamps, strict=True)
    }


def changed_files(
    fs: fsspec.AbstractFileSystem,
    recorded: dict[str, str],
    paths: tuple[str, ...],
    stamps: tuple[str, ...],
    root: str,
    moved: bool = False,
) -> list[str]:
    """The files of a shard, under the input root, that are not what the run recorded:
    changed, added or gone. A digest is compared with a digest of the file as it is;
    files `moved` since (copies: new times, perhaps another store) by their sizes."""
    now = {_relative(path, root): (path, stamp) for path, stamp in zip(paths, stamps, strict=True)}
    changed = sorted(set(recorded) ^ set(now))
    for name in sorted(set(recorded) & set(now)):
        path, stamp = now[name]
        then = recorded[name]
        if f" {DIGEST} " in then:
            stamp = digest_stamp(fs, path)
        elif moved:
            stamp, then = stamp.split(" ")[0], then.split(" ")[0]
        if stamp != then:
            changed.append(name)
    return sorted(changed)


def _relative(path: str, root: str) -> str:
    relative = posixpath.relpath(path, root)
    return posixpath.basename(path) if relative == "." else relative
