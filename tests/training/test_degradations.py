"""Kinds of hard scans: each changes a line the way its name says, from its seed alone."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageFont

from pipeline.synthetic.degradations import KINDS, all_at_once, several
from pipeline.synthetic.drawing import draw_text
from pipeline.synthetic.lines import SynthSettings, rendered_lines

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


@pytest.fixture(scope="module")
def line() -> Image.Image:
    font = ImageFont.truetype(FONT, 40)
    return draw_text("Invoice #A7-3391, due 12.8.2026", font, (20, 8, 20, 8)).convert("L")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_is_a_new_greyscale_image_fixed_by_its_seed(line, kind):
    first = KINDS[kind](line, random.Random(5))
    again = KINDS[kind](line, random.Random(5))
    assert first.mode == "L"
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert first.size != line.size or not np.array_equal(np.asarray(first), np.asarray(line))


def test_the_kinds_do_what_their_names_say(line):
    pixels = np.asarray(line)
    small = np.asarray(KINDS["small"](line, random.Random(1)))
    inked = np.flatnonzero((small < 128).any(axis=1))
    assert 11 <= inked[-1] - inked[0] + 1 <= 19  # the text's height, resampled
    assert set(np.unique(KINDS["binarised"](line, random.Random(1)))) <= {0, 255}
    faint = np.asarray(KINDS["faint"](line, random.Random(1)))
    assert faint.min() > 40 and faint.max() - faint.min() < 200  # grey ink, low contrast
    noisy = np.asarray(KINDS["noisy"](line, random.Random(1)))
    assert (pixels[:5] < 50).sum() == 0 < (noisy[:5] < 50).sum()  # pepper on blank paper
    turned = KINDS["turned"](line, random.Random(1))
    assert turned.height > line.height  # the turned line needs more height
    assert all_at_once(line, random.Random(1)).height < line.height  # small among the rest
    assert several(line, random.Random(1)).mode == "L"


def test_synthetic_lines_take_kinds_of_hard_scan_in_the_share_asked():
    families = [(FONT,)]
    words = ["alpha", "beta", "gamma", "delta"]

    def lines(hard: float) -> list[tuple[str, Image.Image]]:
        settings = SynthSettings(hard=hard, degraded=0.0)
        stream = rendered_lines(settings, random.Random(9), words, families)
        return [next(stream) for _ in range(6)]

    plain, hard = lines(0.0), lines(1.0)
    assert [text for text, _ in lines(1.0)] == [text for text, _ in hard]  # from the seed
    (text, clean), (hard_text, scanned) = plain[0], hard[0]
    assert hard_text == text  # the same line, drawn before its scan is made hard
    assert clean.size != scanned.size or not np.array_equal(np.asarray(clean), np.asarray(scanned))
