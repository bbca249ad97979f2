"""Streaming listings of an output, so that finding the shards still to do never holds
every committed shard id at once: an output of millions of shards is read one listing
page (S3: 1,000 keys) or one directory (other stores) at a time."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator

import fsspec
import pyarrow.parquet as pq

from pipeline.exceptions import InputError
from pipeline.inputs.shards import Shard
from pipeline.output.layout import LEDGER_DIR, ROW_ERRORS_KEY
from pipeline.storage import join

OUTPUT_SUFFIX = ".parquet"
S3_PAGE_KEYS = 1000  # the most one ListObjectsV2 call returns


def iter_keys(fs: fsspec.AbstractFileSystem, root: str) -> Iterator[str]:
    """Every file under `root`, as a path relative to it, a page or a directory at a time
    (in no particular order: stores differ, SeaweedFS lists a/b before a-b)."""
    fs.invalidate_cache()  # another process may have written since we last listed
    if hasattr(fs, "call_s3"):
        yield from _s3_keys(fs, root)
        return
    for directory, _, files in fs.walk(root):
        relative = directory[len(root) :].strip("/")
        for name in files:
            yield f"{relative}/{name}" if relative else name


def _s3_keys(fs, root: str) -> Iterator[str]:
    bucket, prefix, _ = fs.split_path(root)
    prefix = f"{prefix}/" if prefix else ""
    request = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": S3_PAGE_KEYS}
    while True:
        page = fs.call_s3("list_objects_v2", **request)
        for item in page.get("Contents", []):
            yield item["Key"][len(prefix) :]
        if not page.get("IsTruncated"):
            return
        request["ContinuationToken"] = page["NextContinuationToken"]


def iter_committed(fs: fsspec.AbstractFileSystem, root: str) -> Iterator[tuple[str, str]]:
    """(shard id, path) of every committed output file."""
    for relative in iter_keys(fs, root):
        if not relative.endswith(OUTPUT_SUFFIX) or relative.startswith(f"{LEDGER_DIR}/"):
            continue
        if posixpath.basename(relative).startswith("."):
            continue  # a temporary left by a killed run
        yield relative.removesuffix(OUTPUT_SUFFIX), join(root, relative)


def committed_files(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, str]:
    """{shard id: path} of every committed output file under root."""
    return dict(iter_committed(fs, root))


def split_committed(
    shards: Iterable[Shard], fs: fsspec.AbstractFileSystem, root: str
) -> tuple[list[Shard], int]:
    """(the shards with no output file yet, in their order; how many have one). The
    input's shards are in memory anyway; the output's listing streams past them."""
    shards = list(shards)
    waiting = {shard.id for shard in shards}
    for shard_id, _ in iter_committed(fs, root):
        waiting.discard(shard_id)
    return [shard for shard in shards if shard.id in waiting], len(shards) - len(waiting)


def not_an_output(uri: str) -> InputError:
    """What `status` and `preview` say of a path with nothing of a run in it."""
    return InputError(
        f"output {uri} holds no committed shards: not a shardscribe output, "
        "or no shard has finished yet"
    )


def footer_counts(fs: fsspec.AbstractFileSystem, path: str) -> tuple[int, int]:
    """(rows, row errors) of a committed file, from its footer alone."""
    with fs.open(path, "rb") as handle:
        metadata = pq.read_metadata(handle)
    return metadata.num_rows, int((metadata.metadata or {}).get(ROW_ERRORS_KEY, b"0"))
