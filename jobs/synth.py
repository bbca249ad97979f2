"""`shardscribe synth`: printed text lines rendered with offline fonts, written as
WebDataset shards (`<key>.png` + `<key>.txt`) that `run` reads and `train` learns from.

Lines mix dictionary words, numbers, dates and prices, and random characters, in
mixed case with punctuation; each is rendered at a random size, position and
contrast, sometimes blurred or noisy. Everything follows from the seed: shard `i`
has its own generator, so any shard can be rebuilt alone.
"""

from __future__ import annotations

import io
import logging
import random
import string
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pipeline.config import StorageSettings
from pipeline.storage import join, open_filesystem

log = logging.getLogger(__name__)

WORDS_FILE = Path(__file__).parent / "data" / "words.txt"
WordSplit = Literal["train", "heldout", "all"]
# Every 10th word of the list is kept out of training lines, for honest held-out tests.
HELDOUT_EVERY = 10
PUNCTUATION_AFTER = ",.;:!?"
RANDOM_CHARS = string.ascii_letters + string.digits + string.punctuation


@dataclass(frozen=True)
class SynthSettings:
    lines: int = 10_000
    per_shard: int = 1000
    seed: int = 0
    fonts: tuple[str, ...] = ()  # font files used beside Pillow's own
    min_font_size: int = 14
    max_font_size: int = 32
    max_chars: int = 32
    words: WordSplit = "train"


def word_list(split: WordSplit) -> list[str]:
    words = WORDS_FILE.read_text().split()
    if split == "all":
        return words
    heldout = split == "heldout"
    return [w for i, w in enumerate(words) if (i % HELDOUT_EVERY == HELDOUT_EVERY - 1) == heldout]


def _cased(words: list[str], rng: random.Random) -> list[str]:
    style = rng.random()
    if style < 0.55:
        return words
    if style < 0.75:
        return [words[0].capitalize(), *words[1:]]
    if style < 0.9:
        return [w.capitalize() for w in words]
    return [w.upper() for w in words]


def _number(rng: random.Random) -> str:
    kind = rng.randrange(7)
    if kind == 0:
        return str(rng.randint(0, 99999))
    if kind == 1:
        return f"{rng.uniform(0, 1000):.{rng.randint(1, 3)}f}"
    if kind == 2:
        return f"${rng.randint(1, 9999):,}.{rng.randint(0, 99):02d}"
    if kind == 3:
        return f"{rng.randint(0, 100)}%"
    if kind == 4:
        return f"{rng.randint(1950, 2049)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if kind == 5:
        return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
    return f"#{rng.randint(1, 999)}"


def _random_token(rng: random.Random) -> str:
    return "".join(rng.choices(RANDOM_CHARS, k=rng.randint(1, 8)))


def random_line(rng: random.Random, words: list[str], max_chars: int) -> str:
    """One line: words (cased, with punctuation), numbers or random characters, mixed."""
    kind = rng.random()
    tokens: list[str] = []
    for _ in range(rng.randint(1, 7)):
        if kind < 0.55 or (kind < 0.8 and rng.random() < 0.7):
            token = rng.choice(words)
            if rng.random() < 0.15:
                token += rng.choice(PUNCTUATION_AFTER)
        elif kind < 0.8:
            token = _number(rng)
        else:
            token = _random_token(rng) if rng.random() < 0.7 else _number(rng)
        tokens.append(token)
    if kind < 0.8:
        tokens = _cased(tokens, rng)
    line = tokens[0][:max_chars]
    for token in tokens[1:]:
        if len(line) + 1 + len(token) > max_chars:
            break
        line += " " + token
    return line


def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)


def render_text(text: str, font: ImageFont.FreeTypeFont, rng: random.Random) -> Image.Image:
    """Grey text on a grey background (sometimes inverted), random margins, maybe blur
    and noise. Greyscale PNG-ready image; the width follows the text."""
    left, top, right, bottom = font.getbbox(text)
    margins = [rng.randint(2, 20), rng.randint(1, 10), rng.randint(2, 20), rng.randint(1, 10)]
    size = (right - left + margins[0] + margins[2], bottom - top + margins[1] + margins[3])
    background, ink = rng.randint(170, 255), rng.randint(0, 90)
    if rng.random() < 0.1:
        background, ink = 255 - background, 255 - ink
    image = Image.new("L", size, background)
    ImageDraw.Draw(image).text((margins[0] - left, margins[1] - top), text, fill=ink, font=font)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.5:
        noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(2, 12), size[::-1])
        image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8), "L")
    return image


def synth_samples(settings: SynthSettings, shard: int) -> list[tuple[str, str, bytes]]:
    """(key, text, PNG bytes) for every line of shard number `shard`."""
    rng = random.Random(settings.seed * 1_000_003 + shard)
    words = word_list(settings.words)
    fonts: list[str | None] = [None, *settings.fonts]
    first = shard * settings.per_shard
    count = min(settings.per_shard, settings.lines - first)
    samples = []
    for i in range(first, first + count):
        text = random_line(rng, words, settings.max_chars)
        # Pillow's bundled font for half of the lines, the given fonts share the rest.
        path = None if rng.random() < 0.5 else rng.choice(fonts)
        font = _font(path, rng.randint(settings.min_font_size, settings.max_font_size))
        png = io.BytesIO()
        render_text(text, font, rng).save(png, "PNG")
        samples.append((f"{i:08d}", text, png.getvalue()))
    return samples


def write_tar(file: BinaryIO, members: Iterable[tuple[str, bytes]]) -> None:
    """A plain (WebDataset) tar of `(name, bytes)` members, in the order given."""
    with tarfile.open(fileobj=file, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_synth_shards(
    uri: str, settings: SynthSettings, storage: StorageSettings | None = None
) -> list[str]:
    """Write `lines-NNNNN.tar` shards under `uri` (a path or an fsspec URL); their paths."""
    fs, root = open_filesystem(uri, storage or StorageSettings())
    fs.makedirs(root, exist_ok=True)
    paths = []
    for shard in range(-(-settings.lines // settings.per_shard)):
        path = join(root, f"lines-{shard:05d}.tar")
        members = (
            member
            for key, text, png in synth_samples(settings, shard)
            for member in ((f"{key}.png", png), (f"{key}.txt", text.encode()))
        )
        with fs.open(path, "wb") as file:
            write_tar(file, members)
        paths.append(path)
        log.info("wrote %s", path)
    return paths
