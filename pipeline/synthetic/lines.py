"""Printed text lines rendered with the machine's fonts (`shardscribe synth`, the
streamed trainer), written as WebDataset shards (`<key>.png` + `<key>.txt`) that `run`
reads and `train` learns from.

Lines are prose, words, numbers, dates, prices, phone numbers, addresses and codes
(`pipeline.synthetic.texts`), 1 to `max_chars` characters long, in a random font family
of the chosen split (`pipeline.synthetic.fonts`; Pillow's own font too), at a random
size, margin and contrast; part of them scan-like: noise, blur, JPEG artefacts, a slight
rotation, an uneven background, faded ink. A share of the shards (`page_lines`) holds
lines cut by the project's segmenter from printed pages instead. Everything follows from the
seed: shard `i` has its own generator, so any shard can be rebuilt alone.
"""

from __future__ import annotations

import io
import logging
import math
import random
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter, ImageFont

from pipeline.inputs.segmentation import segment_lines
from pipeline.job_config import StorageSettings
from pipeline.storage import open_filesystem
from pipeline.synthetic.degradations import several
from pipeline.synthetic.drawing import PageLayout, draw_page, draw_text, png_bytes
from pipeline.synthetic.fonts import font_split, installed_families
from pipeline.synthetic.line_shards import LineSample, write_line_shard
from pipeline.synthetic.texts import WordSplit, training_line, word_list

log = logging.getLogger(__name__)
FontSplit = Literal["train", "heldout", "all"]
TALL_CROPS = 1 / 3  # share of lines cropped loosely around the text
LINE_ASPECT = 64  # the widest line the bundled model reads whole (width / height)


@dataclass(frozen=True)
class SynthSettings:
    lines: int = 10_000
    per_shard: int = 1000
    seed: int = 0
    fonts: tuple[str, ...] = ()  # font files; none: the installed families of `font_split`
    font_split: FontSplit = "train"
    min_font_size: int = 14  # about 10-px capitals
    max_font_size: int = 64
    max_chars: int = 100
    words: WordSplit = "train"
    degraded: float = 0.5  # share of lines made scan-like
    hard: float = 0.0  # share of lines given 1-3 kinds of hard scan (`degradations`)
    page_lines: float = 0.0  # share of shards whose lines are cut from rendered pages


def font_choices(settings: SynthSettings) -> list[tuple[str | None, ...]]:
    """Font files grouped by family; `(None,)` stands for Pillow's own font."""
    if settings.fonts:
        return [(None,), *((path,) for path in settings.fonts)]
    return [(None,), *font_split(installed_families(), settings.font_split).values()]


def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)


def render_text(text: str, font: ImageFont.FreeTypeFont, rng: random.Random) -> Image.Image:
    """Dark text on a light background (sometimes inverted, sometimes faded) with random
    margins. Greyscale; the width follows the text. A third of the lines are loose
    crops, as hand-made crops and other tools' segmenters give: the text fills 35-95 %
    of the image height at any vertical offset."""
    size = font.size
    left, right = rng.randint(1, max(2, size)), rng.randint(1, max(2, size))
    if rng.random() < TALL_CROPS:
        _, top, _, bottom = font.getbbox(text)
        spare = round((bottom - top) / rng.uniform(0.35, 0.95)) - (bottom - top)
        above = rng.randint(0, max(spare, 0))
        margins = (left, above, right, max(spare, 0) - above)
    else:
        above, below = (rng.randint(0, max(1, size // 3)) for _ in range(2))
        margins = (left, above, right, below)
    background = rng.randint(190, 255)
    ink = rng.randint(0, 70) if rng.random() < 0.8 else rng.randint(70, 140)  # faded ink
    if rng.random() < 0.05:
        background, ink = 255 - background, 255 - ink
    return draw_text(text, font, margins, background, ink)


def font_size(settings: SynthSettings, rng: random.Random) -> int:
    """Log-uniform between the bounds: small print (10-px glyphs) as often as large."""
    low, high = math.log(settings.min_font_size), math.log(settings.max_font_size)
    return round(math.exp(rng.uniform(low, high)))


def degrade(image: Image.Image, rng: random.Random) -> Image.Image:
    """Scan-like: a slight rotation, an uneven background, blur, resampling, noise, JPEG."""
    background = int(np.median(np.asarray(image)))
    if rng.random() < 0.4:
        image = image.rotate(
            rng.uniform(-1.5, 1.5), Image.BILINEAR, expand=True, fillcolor=background
        )
    pixels = np.asarray(image, dtype=np.float32)
    if rng.random() < 0.4:
        ramp = np.linspace(0, rng.uniform(-60, 60), pixels.shape[1], dtype=np.float32)
        pixels = pixels + (ramp if rng.random() < 0.5 else ramp[::-1])
    if rng.random() < 0.5:
        noise = np.random.default_rng(rng.getrandbits(32)).normal(
            0, rng.uniform(3, 18), pixels.shape
        )
        pixels = pixels + noise
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")
    if rng.random() < 0.4:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.3)))
    if rng.random() < 0.25:
        factor = rng.uniform(0.45, 0.8)
        small = image.resize(
            (max(1, int(image.width * factor)), max(1, int(image.height * factor)))
        )
        image = small.resize(image.size, Image.BILINEAR)
    if rng.random() < 0.4:
        jpeg = io.BytesIO()
        image.save(jpeg, "JPEG", quality=rng.randint(15, 60))
        image = Image.open(jpeg)
        image.load()
    return image


def synth_samples(settings: SynthSettings, shard: int) -> list[LineSample]:
    """Every line of shard number `shard`: its key, PNG bytes and text."""
    rng = random.Random(settings.seed * 1_000_003 + shard)
    words = word_list(settings.words)
    families = font_choices(settings)
    first = shard * settings.per_shard
    count = min(settings.per_shard, settings.lines - first)
    make = page_lines if rng.random() < settings.page_lines else rendered_lines
    samples = []
    lines = make(settings, rng, words, families)  # endless: the shard takes `count`
    for i, (text, image) in zip(range(first, first + count), lines, strict=False):
        samples.append(LineSample(f"{i:08d}", png_bytes(image), text))
    return samples


def rendered_lines(settings, rng, words, families) -> Iterator[tuple[str, Image.Image]]:
    """Endless (text, image): one line drawn alone, a part of them scan-like."""
    while True:
        text = training_line(rng, words, settings.max_chars)
        font = _font(rng.choice(rng.choice(families)), font_size(settings, rng))
        image = render_text(text, font, rng)
        if settings.hard and rng.random() < settings.hard:
            yield text, several(image, rng, rng.randint(1, 3))
            continue
        yield text, degrade(image, rng) if rng.random() < settings.degraded else image


def page_lines(settings, rng, words, families) -> Iterator[tuple[str, Image.Image]]:
    """Endless (text, image): lines cut by the project's segmenter from printed pages
    (one or two columns, 9-14 pt at 150-300 dpi, a part of them scan-like), so the model
    learns the crops a `--segment lines` run gives it. A page whose lines the segmenter
    does not find one for one is skipped: its crops could not be paired with their text."""
    while True:
        dpi = rng.choice((150, 200, 300))
        family = rng.choice(families[1:]) if len(families) > 1 else families[0]
        font = _font(rng.choice(family), round(rng.uniform(9, 14) * dpi / 72))
        width, height = round(8.27 * dpi), round(11.69 * dpi)
        layout = PageLayout(width, height, dpi, rng.choice((1, 1, 2)), dpi // 3)
        text = " ".join(training_line(rng, words, settings.max_chars) for _ in range(120))
        page, printed = draw_page(text, font, layout)
        if rng.random() < settings.degraded:
            page = degrade(page, rng)
        found = segment_lines(page, max_aspect=LINE_ASPECT)
        if len(found) != len(printed) or any(line.continues for line in found):
            log.warning("page skipped: %d lines printed, %d found", len(printed), len(found))
            continue
        yield from ((line_text, line.crop) for line_text, line in zip(printed, found, strict=True))


def write_synth_shard(
    uri: str, settings: SynthSettings, storage: StorageSettings, shard: int
) -> str:
    """Write shard number `shard` as `lines-NNNNN.tar` under `uri`; its path."""
    path = write_line_shard(uri, shard, synth_samples(settings, shard), storage)
    log.info("wrote %s", path)
    return path


def write_synth_shards(
    uri: str, settings: SynthSettings, storage: StorageSettings | None = None, workers: int = 1
) -> list[str]:
    """Write `lines-NNNNN.tar` shards under `uri` (a path or an fsspec URL), `workers`
    processes rendering them; their paths."""
    storage = storage or StorageSettings()
    fs, root = open_filesystem(uri, storage)
    fs.makedirs(root, exist_ok=True)
    write = partial(write_synth_shard, uri, settings, storage)
    shards = range(-(-settings.lines // settings.per_shard))
    if workers <= 1:
        return [write(shard) for shard in shards]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(write, shards))
