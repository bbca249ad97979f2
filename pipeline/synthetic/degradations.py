"""Hard scans, one kind at a time or several at once: what real scans and phone photos do
to printed lines. Each kind takes a greyscale line image and a `random.Random` and
returns a new image; the OCR benchmark reads every kind on its own and all together
(`benchmarks.ocr_vs_tesseract --kinds`), and training data can draw from the same kinds.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

Degradation = Callable[[Image.Image, random.Random], Image.Image]


def small(image: Image.Image, rng: random.Random) -> Image.Image:
    """The line scaled down so its text (from the top of its tallest glyph to the bottom
    of its lowest) is 12-18 px high: small print at a low resolution."""
    pixels = np.asarray(image)
    dark = pixels < (int(pixels.min()) + int(pixels.max())) / 2
    inked = np.flatnonzero(dark.mean(axis=1) > 0.02)  # rows with ink, not a stray speck
    text_height = inked[-1] - inked[0] + 1 if len(inked) else image.height
    scale = min(1.0, rng.randint(12, 18) / text_height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BILINEAR)


def blurred(image: Image.Image, rng: random.Random) -> Image.Image:
    """Out of focus (Gaussian) or moved (a horizontal or vertical streak)."""
    if rng.random() < 0.5:
        return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 1.8)))
    length, axis = rng.choice((3, 5, 7)), rng.choice((0, 1))
    pixels = np.asarray(image, np.float32)
    padding = [(0, 0), (0, 0)]
    padding[axis] = (length // 2, length // 2)
    padded = np.pad(pixels, padding, mode="edge")
    size = pixels.shape[axis]
    streak = sum(np.take(padded, range(i, i + size), axis=axis) for i in range(length)) / length
    return Image.fromarray(np.clip(streak, 0, 255).astype(np.uint8), "L")


def crushed(image: Image.Image, rng: random.Random, quality=(5, 30)) -> Image.Image:
    """JPEG at quality 5-30."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=rng.randint(*quality))
    crushed_image = Image.open(buffer)
    crushed_image.load()
    return crushed_image.convert("L")


def noisy(
    image: Image.Image, rng: random.Random, sigma=(10, 30), spots=(0.01, 0.04)
) -> Image.Image:
    """Sensor noise, then salt and pepper on 1-4 % of the pixels."""
    generator = np.random.default_rng(rng.getrandbits(32))
    pixels = np.asarray(image, np.float32)
    pixels = pixels + generator.normal(0, rng.uniform(*sigma), pixels.shape)
    spots = generator.random(pixels.shape) < rng.uniform(*spots)
    pixels[spots] = generator.choice([0.0, 255.0], size=int(spots.sum()))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")


def faint(image: Image.Image, rng: random.Random, ink=(110, 170)) -> Image.Image:
    """Faint ink on tinted paper under uneven light."""
    pixels = np.asarray(image, np.float32) / 255  # 0 ink .. 1 paper
    ink, paper = rng.uniform(*ink), rng.uniform(195, 235)
    pixels = ink + pixels * (paper - ink)
    height, width = pixels.shape
    light = np.linspace(0, rng.uniform(-50, 50), width, dtype=np.float32)[None, :]
    light = light + np.linspace(0, rng.uniform(-25, 25), height, dtype=np.float32)[:, None]
    return Image.fromarray(np.clip(pixels + light, 0, 255).astype(np.uint8), "L")


def turned(image: Image.Image, rng: random.Random) -> Image.Image:
    """Turned by 1-3 degrees either way, and sheared a little."""
    paper = int(np.median(np.asarray(image)))
    angle = rng.uniform(1, 3) * rng.choice((-1, 1))
    image = image.rotate(angle, Image.BILINEAR, expand=True, fillcolor=paper)
    shear = rng.uniform(-0.15, 0.15)
    offset = -shear * image.height / 2
    return image.transform(
        image.size, Image.AFFINE, (1, shear, offset, 0, 1, 0), Image.BILINEAR, fillcolor=paper
    )


def binarised(image: Image.Image, rng: random.Random) -> Image.Image:
    """A fax or photocopy: slightly blurred, then black or white at a threshold."""
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9))))
    threshold = rng.uniform(0.4, 0.6) * (int(pixels.max()) + int(pixels.min()))
    return Image.fromarray(np.where(pixels < threshold, 0, 255).astype(np.uint8), "L")


def bleeding(image: Image.Image, rng: random.Random) -> Image.Image:
    """The other side's print showing through, mirrored and faint, and a smudge."""
    pixels = np.asarray(image, np.float32)
    behind = np.asarray(image.transpose(Image.FLIP_LEFT_RIGHT), np.float32)
    shift = rng.randint(-image.height // 4, image.height // 4)
    behind = np.roll(behind, shift, axis=0)
    pixels = np.minimum(pixels, 255 - (255 - behind) * rng.uniform(0.15, 0.35))
    height, width = pixels.shape
    y, x = np.mgrid[0:height, 0:width]
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    radius = rng.uniform(0.3, 0.8) * height
    smudge = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius**2)) * rng.uniform(30, 70)
    return Image.fromarray(np.clip(pixels - smudge, 0, 255).astype(np.uint8), "L")


KINDS: dict[str, Degradation] = {
    "small": small,
    "blurred": blurred,
    "crushed": crushed,
    "noisy": noisy,
    "faint": faint,
    "turned": turned,
    "binarised": binarised,
    "bleeding": bleeding,
}


def all_at_once(image: Image.Image, rng: random.Random) -> Image.Image:
    """Faint, blurred, small, noisy and crushed together, in the order a camera does them:
    the light and the lens, the sampling and the sensor's noise, the file's compression;
    each milder than on its own, as they come together in a poor but readable photo."""
    image = blurred(faint(image, rng, ink=(60, 110)), rng)
    image = noisy(small(image, rng), rng, sigma=(4, 12), spots=(0.0, 0.005))
    return crushed(image, rng, quality=(20, 40))


def several(image: Image.Image, rng: random.Random, count: int = 3) -> Image.Image:
    """`count` kinds drawn at random, applied in the order of KINDS."""
    chosen = set(rng.sample(sorted(KINDS), count))
    for name, kind in KINDS.items():
        if name in chosen:
            image = kind(image, rng)
    return image
