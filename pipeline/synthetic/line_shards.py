"""WebDataset line shards: the one writer of the demo's, `shardscribe synth`'s and the
bench's shards. A sample is a line image (`<key>.png`) with, when known, its text
(`<key>.txt`) and metadata (`<key>.json`)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.inputs.webdataset import write_tar
from pipeline.job_config import StorageSettings
from pipeline.storage import join, open_filesystem

SHARD_NAME = "lines-{:05d}.tar"


@dataclass(frozen=True)
class LineSample:
    key: str
    png: bytes
    text: str | None = None
    meta: dict[str, Any] | None = None

    def members(self) -> list[tuple[str, bytes]]:
        """The sample's tar members, image first."""
        members = [(f"{self.key}.png", self.png)]
        if self.text is not None:
            members.append((f"{self.key}.txt", self.text.encode()))
        if self.meta is not None:
            members.append((f"{self.key}.json", json.dumps(self.meta).encode()))
        return members


def write_line_shard(
    uri: str,
    number: int,
    samples: Iterable[LineSample],
    storage: StorageSettings | None = None,
    name: str = SHARD_NAME,
) -> str:
    """Shard `number` (named `name.format(number)`) under `uri`, a path or an fsspec URL,
    written as the samples come; its path."""
    fs, root = open_filesystem(uri, storage or StorageSettings())
    path = join(root, name.format(number))
    with fs.open(path, "wb") as file:
        write_tar(file, (member for sample in samples for member in sample.members()))
    return path


def write_line_shards(
    uri: str,
    samples: Sequence[LineSample],
    sizes: Sequence[int],
    storage: StorageSettings | None = None,
    name: str = SHARD_NAME,
) -> list[str]:
    """`samples` in order, cut into shards of `sizes` in turn (the last one may be short),
    under `uri` (made if missing); their paths."""
    storage = storage or StorageSettings()
    fs, root = open_filesystem(uri, storage)
    fs.makedirs(root, exist_ok=True)
    paths, start = [], 0
    for number, size in enumerate(itertools.cycle(sizes)):
        if start >= len(samples):
            break
        chunk = samples[start : start + size]
        paths.append(write_line_shard(uri, number, chunk, storage, name))
        start += size
    return paths
