"""Writing WebDataset shards: plain tars whose members share a key per sample
(`<key>.png`, `<key>.txt`, ...), the layout `pipeline.inputs.readers` reads."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from typing import BinaryIO


def write_tar(file: BinaryIO, members: Iterable[tuple[str, bytes]]) -> None:
    """A plain (WebDataset) tar of `(name, bytes)` members, in the order given."""
    with tarfile.open(fileobj=file, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """The tar of `write_tar` in memory, for one PUT to an object store."""
    buffer = io.BytesIO()
    write_tar(buffer, members)
    return buffer.getvalue()
