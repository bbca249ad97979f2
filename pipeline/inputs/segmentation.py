"""Text-line segmentation: a page image -> its text lines in reading order, for models
that read one line at a time (TrOCR, the bundled model).

Binarise (background flattened, then Otsu), drop specks and rules, deskew (+-5 deg, by
the sharpness of the row profile), split the page into blocks and columns by the
widest empty bands (a recursive XY cut on the ink mask), cut each block into lines at
its empty rows, and order lines top to bottom within a column, columns left to right.
Every pixel operation is OpenCV or numpy; the Python loops run over bands and lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

MAX_SKEW_DEG = 5.0
MAX_LINES = 1000  # a page of noise must not become tens of thousands of generate calls
MIN_GLYPH_PX = 6  # smaller marks are specks: no readable print is this small
MIN_INK = 0.04  # of a line's box; printed lines measure 0.15-0.5, specks of noise under 0.03
MAX_INK = 0.35  # of a page: print covers 3-15 %; beyond this it is noise or a picture


@dataclass(frozen=True)
class Line:
    """A line's box in the page's pixels (x1, y1 exclusive) and its crop, padded, from
    the deskewed page. `continues`: a piece of the previous line, cut because the whole
    line was too wide for the model."""

    box: tuple[int, int, int, int]
    crop: Image.Image
    continues: bool = False


def segment_lines(page: Image.Image, max_aspect: float | None = None) -> list[Line]:
    """The text lines of `page` in reading order; none for a blank page or one that is
    mostly dark (noise, a photograph). Lines wider than `max_aspect` (width / height)
    are cut at their widest inner gaps."""
    grey = np.asarray(page.convert("L"))
    ink = _ink_mask(grey)
    height = _text_height(ink)
    if height is None or ink.mean() > MAX_INK:
        return []
    ink = _drop_non_text(ink, height)
    angle = _skew_angle(ink)
    rotation = cv2.getRotationMatrix2D((grey.shape[1] / 2, grey.shape[0] / 2), angle, 1.0)
    if angle:
        grey = _rotate(grey, rotation, cv2.INTER_LINEAR, 255)
        ink = _rotate(ink, rotation, cv2.INTER_NEAREST, 0)
    unrotate = cv2.invertAffineTransform(rotation)
    lines = []
    for x0, y0, x1, y1 in _line_boxes(ink, height):
        for piece, (px0, px1) in enumerate(_pieces(ink[y0:y1, x0:x1], max_aspect)):
            box = (x0 + px0, y0, x0 + px1, y1)
            lines.append(
                Line(_page_box(box, unrotate, grey.shape), _crop(grey, box), continues=piece > 0)
            )
            if len(lines) == MAX_LINES:
                return lines
    return lines


def _ink_mask(grey: np.ndarray) -> np.ndarray:
    """1 where there is ink: the background (a closing wider than any stroke) divided
    out, so uneven lighting and faded paper do not move the Otsu threshold."""
    size = max(15, min(grey.shape) // 40) | 1
    background = cv2.morphologyEx(grey, cv2.MORPH_CLOSE, np.ones((size, size), np.uint8))
    flat = cv2.divide(grey, np.maximum(background, 1), scale=255)
    if int(flat.min()) > 200:  # nothing darker than faint paper texture: a blank page
        return np.zeros_like(grey)
    _, ink = cv2.threshold(flat, 0, 1, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    return ink


def _components(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    return labels, stats[1:count]  # row 0 is the background


def _text_height(ink: np.ndarray) -> float | None:
    """The median height of glyph-sized components: the page's text size."""
    _, stats = _components(ink)
    heights = stats[:, cv2.CC_STAT_HEIGHT]
    glyphs = heights[(heights >= MIN_GLYPH_PX) & (heights < 0.95 * ink.shape[0])]
    return float(np.median(glyphs)) if len(glyphs) else None


def _drop_non_text(ink: np.ndarray, height: float) -> np.ndarray:
    """Keep glyph-like components: no specks, no rules, frames or blobs far taller than
    the text (they would join lines and columns)."""
    labels, stats = _components(ink)
    w, h = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    area = stats[:, cv2.CC_STAT_AREA]
    speck = (area < max(3, (height / 8) ** 2)) & (h < height / 3)
    rule = (h < height / 4) & (w > 8 * height)  # accents and dots are short and narrow
    tall = h > 6 * height
    keep = np.concatenate([[0], ~(speck | rule | tall)]).astype(np.uint8)
    return keep[labels]


def _skew_angle(ink: np.ndarray) -> float:
    """The rotation (degrees) that makes the rows of ink sharpest, searched coarse to fine
    on a reduced copy of the mask."""
    scale = min(1.0, 800 / max(ink.shape))
    small = cv2.resize(ink, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    centre = (small.shape[1] / 2, small.shape[0] / 2)

    def sharpness(angle: float) -> float:
        matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
        rows = _rotate(small, matrix, cv2.INTER_NEAREST, 0).sum(axis=1, dtype=np.float64)
        return float(np.square(np.diff(rows)).sum())

    best = 0.0
    for step, span in ((0.5, MAX_SKEW_DEG), (0.1, 0.5), (0.02, 0.1)):
        candidates = best + np.arange(-span, span + step / 2, step)
        candidates = candidates[np.abs(candidates) <= MAX_SKEW_DEG]
        best = float(max(candidates, key=sharpness))
    return 0.0 if abs(best) < 0.02 else best


def _rotate(image: np.ndarray, matrix: np.ndarray, interpolation: int, fill: int) -> np.ndarray:
    size = (image.shape[1], image.shape[0])
    return cv2.warpAffine(image, matrix, size, flags=interpolation, borderValue=fill)


def _runs(occupied: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    edges = np.diff(np.concatenate([[0], occupied.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _line_boxes(ink: np.ndarray, height: float) -> list[tuple[int, int, int, int]]:
    """Line boxes (x0, y0, x1, y1) in reading order, by a recursive XY cut: a region is
    split at empty vertical bands wide enough to be gutters (columns, left to right),
    else at empty horizontal bands taller than a line gap (blocks, top to bottom), and a
    region with neither is one block of lines."""
    boxes: list[tuple[int, int, int, int]] = []
    regions = [(0, 0, ink.shape[1], ink.shape[0])]
    while regions:
        left, top, right, bottom = regions.pop()
        region = ink[top:bottom, left:right]
        columns = _runs(region.any(axis=0))  # relative to (left, top)
        rows = _runs(region.any(axis=1))
        if not rows:
            continue
        # Trim to the ink, then look for gaps between the runs.
        x0, x1 = left + columns[0][0], left + columns[-1][1]
        y0, y1 = top + rows[0][0], top + rows[-1][1]
        tall_enough = y1 - y0 > 3 * height  # one line's word gaps are not gutters
        parts = _split(columns, 2.5 * height, left) if tall_enough else []
        if parts:
            regions.extend((a, y0, b, y1) for a, b in reversed(parts))
            continue
        parts = _split(rows, 1.2 * height, top)
        if parts:
            regions.extend((x0, a, x1, b) for a, b in reversed(parts))
            continue
        bands = [(top + a, top + b) for a, b in rows]
        boxes.extend(_block_lines(ink, x0, x1, bands, height))
    return boxes


def _split(runs: list[tuple[int, int]], gap: float, offset: int) -> list[tuple[int, int]]:
    """Spans of runs separated by gaps of at least `gap`; [] when there is no such gap."""
    spans = [[runs[0][0], runs[0][1]]]
    for start, stop in runs[1:]:
        if start - spans[-1][1] >= gap:
            spans.append([start, stop])
        else:
            spans[-1][1] = stop
    return [(offset + a, offset + b) for a, b in spans] if len(spans) > 1 else []


def _block_lines(
    ink: np.ndarray, x0: int, x1: int, bands: list[tuple[int, int]], height: float
) -> list[tuple[int, int, int, int]]:
    """A block's lines from its `bands` (runs of inked rows, page coordinates) between
    columns x0 and x1: a band too thin for text (accents, dots split off by a blank row)
    merged into the nearer neighbour, each trimmed to its ink."""
    while len(bands) > 1:
        thin = [i for i, (a, b) in enumerate(bands) if b - a < height / 2.5]
        if not thin:
            break
        i = thin[0]
        before = bands[i][0] - bands[i - 1][1] if i > 0 else np.inf
        after = bands[i + 1][0] - bands[i][1] if i + 1 < len(bands) else np.inf
        first = i - 1 if before <= after else i
        bands[first : first + 2] = [(bands[first][0], bands[first + 1][1])]
    lines = []
    for top, bottom in bands:
        band = ink[top:bottom, x0:x1]
        columns = _runs(band.any(axis=0))
        left, right = columns[0][0], columns[-1][1]
        # Text fills a good part of its box; scattered specks (noise) do not.
        if bottom - top >= max(MIN_GLYPH_PX, height / 3) and band[:, left:right].mean() >= MIN_INK:
            lines.append((x0 + left, top, x0 + right, bottom))
    return lines


def _pieces(line: np.ndarray, max_aspect: float | None) -> list[tuple[int, int]]:
    """(x0, x1) of the pieces a line is read in: itself, or, when wider than the model
    reads, halves cut at the widest gap near the middle, recursively."""
    height, width = line.shape
    padded_height = height * 1.5
    if max_aspect is None or width <= max_aspect * padded_height:
        return [(0, width)]
    gaps = [(a, b) for a, b in _runs(~line.any(axis=0)) if a > 0 and b < width]
    middle = [(b - a, (a + b) // 2) for a, b in gaps if width / 4 < (a + b) / 2 < 3 * width / 4]
    cut = max(middle)[1] if middle else width // 2
    left = _pieces(line[:, :cut], max_aspect)
    right = _pieces(line[:, cut:], max_aspect)
    return left + [(cut + a, cut + b) for a, b in right]


def _crop(grey: np.ndarray, box: tuple[int, int, int, int]) -> Image.Image:
    """The line with a margin like the lines the model learnt from: a quarter of its
    height above and below, half of it left and right."""
    x0, y0, x1, y1 = box
    margin_y, margin_x = (y1 - y0) // 4 + 1, (y1 - y0) // 2 + 1
    top, bottom = max(0, y0 - margin_y), min(grey.shape[0], y1 + margin_y)
    left, right = max(0, x0 - margin_x), min(grey.shape[1], x1 + margin_x)
    return Image.fromarray(np.ascontiguousarray(grey[top:bottom, left:right]), "L")


def _page_box(
    box: tuple[int, int, int, int], unrotate: np.ndarray, shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """A box of the deskewed page mapped back onto the page as given (the bounding box
    of its rotated corners), clipped to the page."""
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64)
    xs, ys = (corners @ unrotate.T).T
    height, width = shape[:2]
    return (
        int(max(0, np.floor(xs.min()))),
        int(max(0, np.floor(ys.min()))),
        int(min(width, np.ceil(xs.max()))),
        int(min(height, np.ceil(ys.max()))),
    )
