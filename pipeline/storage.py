"""fsspec access to any storage URL, with credentials from the config or the environment."""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipeline.exceptions import StorageAccessError
from pipeline.job_config import StorageSettings


def storage_options(url: str, settings: StorageSettings) -> dict[str, Any]:
    """fsspec options for `url`. Only what the config sets is passed, so s3fs/botocore
    still read AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL and
    AWS_DEFAULT_REGION for everything else."""
    if not url.startswith(("s3://", "s3a://")):
        return {}
    options: dict[str, Any] = {}
    if settings.anon:
        options["anon"] = True
    if settings.access_key_id:
        options["key"] = settings.access_key_id
    if settings.secret_access_key:
        options["secret"] = settings.secret_access_key.get_secret_value()
    if settings.session_token:
        options["token"] = settings.session_token.get_secret_value()
    if settings.endpoint_url:
        options["endpoint_url"] = settings.endpoint_url
    if settings.region:
        options["client_kwargs"] = {"region_name": settings.region}
    options["config_kwargs"] = {
        "connect_timeout": settings.connect_timeout_s,
        "read_timeout": settings.read_timeout_s,
    }
    return options


def open_filesystem(url: str, settings: StorageSettings) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem behind `url` and the path within it (no protocol, no trailing slash)."""
    fs, path = fsspec.core.url_to_fs(url, **storage_options(url, settings))
    return fs, path.rstrip("/") or "/"


def join(*parts: str) -> str:
    """Join path parts with '/', the separator of every fsspec filesystem."""
    return posixpath.join(*parts)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


# A file of at most this many bytes is read whole, in one request; a larger one streams.
WHOLE_READ_BYTES = 16 << 20


def open_listed(fs: fsspec.AbstractFileSystem, path: str, size: int) -> BinaryIO:
    """A file whose size the listing gave, opened for reading. Small files come whole
    with one ranged GET: `fs.open` and a plain `cat_file` first ask the store for the
    size (a HEAD on S3), which for one-image shards and small PDFs doubles the requests.
    Larger files stream in blocks, so a shard of gigabytes is never held whole; so does
    a file listed with no size (0)."""
    if not size or size > WHOLE_READ_BYTES:
        return fs.open(path, "rb")
    data = fs.cat_file(path, start=0, end=size)
    if len(data) != size:  # shrank or was replaced since it was listed
        raise FileNotFoundError(f"{path} is no longer the file listed ({size} bytes)")
    return io.BytesIO(data)


def is_retryable(error: BaseException) -> bool:
    """Storage hiccups are worth another try; a missing or forbidden object is not."""
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return False
    return isinstance(error, (OSError, TimeoutError, ConnectionError))


def write_atomically(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Local disks: write a hidden temporary beside the target, then rename (atomic on
    POSIX). Object stores: one PUT, or a multipart upload completed at the end, so the
    object appears whole under its final name or not at all."""
    if not is_local(fs):
        fs.pipe_file(path, data)
        return
    directory, name = posixpath.split(path)
    fs.makedirs(directory, exist_ok=True)
    temporary = join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        fs.pipe_file(temporary, data)
        fs.mv(temporary, path)
    finally:
        if fs.exists(temporary):
            fs.rm(temporary)


def absolute_url(uri: str) -> str:
    """A local path made absolute (what a ledger records, so that another directory
    finds it); URLs as they are."""
    return uri if "://" in uri else os.path.abspath(uri)


def access_problem(url: str, error: BaseException) -> str | None:
    """What a user must do about a store that refuses `url` or cannot be reached, in one
    line; None for errors that are not about access."""
    import botocore.exceptions as aws  # s3fs's dependency; imported only when S3 failed

    if isinstance(error, aws.NoCredentialsError | aws.PartialCredentialsError):
        return (
            f"no credentials for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or storage.access_key_id and storage.secret_access_key), or --anon for a "
            "public bucket"
        )
    if isinstance(error, aws.EndpointConnectionError | aws.ConnectTimeoutError):
        return (
            f"cannot reach the object store of {url} ({error}): check AWS_ENDPOINT_URL or "
            "--endpoint-url, and the network"
        )
    if isinstance(error, PermissionError):
        return (
            f"access to {url} denied ({error}): check AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or --anon for a public bucket) and the bucket's policy"
        )
    if isinstance(error, FileNotFoundError) and "bucket" in str(error).lower():
        return f"{url}: {error}; check the bucket name"
    return None


@contextmanager
def storage_access(url: str) -> Iterator[None]:
    """Turn a refused or unreachable store into a StorageAccessError naming `url` and
    what to set (exit 2), instead of a client library's traceback."""
    try:
        yield
    except Exception as error:  # botocore's own errors derive from Exception alone
        problem = access_problem(url, error)
        if problem is None:
            raise
        raise StorageAccessError(problem) from None
