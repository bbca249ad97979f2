"""Text-line segmentation of pages: lines found, their order, skew, columns, and pages
with nothing to read."""

import itertools

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from pipeline.inputs.segmentation import segment_lines
from pipeline.synthetic.drawing import PageLayout, draw_page, draw_text

FONT = ImageFont.load_default(size=22)
WORDS = (
    "the quick brown fox jumps over a lazy dog while seven bold wizards quietly mix "
    "forty jugs of liquid vinegar and every number from 1 to 2026 is printed here "
) * 12
SMALL_PAGE = PageLayout(width=1100, height=900, margin=60, gutter=70)


def _centre_y(box):
    return (box[1] + box[3]) / 2


def test_a_single_column_page_gives_each_printed_line_top_to_bottom():
    page, printed = draw_page(WORDS, FONT, SMALL_PAGE)
    lines = segment_lines(page)
    assert len(lines) == len(printed) == 20
    centres = [_centre_y(line.box) for line in lines]
    assert centres == sorted(centres)
    pitch = round(FONT.size * SMALL_PAGE.spacing)
    assert np.allclose(np.diff(centres), pitch, atol=2)
    for line in lines:
        x0, y0, x1, y1 = line.box
        assert 55 <= x0 <= 65 and x1 <= 1100 - 55 and 0 < y1 - y0 < pitch
        # The crop holds the line with a margin, as the line model learnt lines.
        assert line.crop.height > y1 - y0 and line.crop.width > x1 - x0
        assert not line.continues


def test_two_columns_under_a_title_read_title_then_left_column_then_right():
    layout = PageLayout(width=1100, height=900, margin=60, columns=2, gutter=70)
    page, printed = draw_page(WORDS, FONT, layout, title="Annual Report")
    lines = segment_lines(page)
    assert len(lines) == len(printed)
    title, *body = lines
    middle = 1100 / 2
    assert title.box[0] < middle < title.box[2] or title.box[2] < middle
    assert title.box[3] < min(line.box[1] for line in body)
    sides = ["left" if line.box[2] < middle else "right" for line in body]
    assert sides == sorted(sides)  # every left line before every right line
    assert sides.count("left") >= sides.count("right") > 0
    for side in ("left", "right"):
        centres = [_centre_y(line.box) for line, s in zip(body, sides, strict=True) if s == side]
        assert centres == sorted(centres)


@pytest.mark.parametrize("angle", [-4.0, 2.5])
def test_a_skewed_page_is_straightened_and_boxes_stay_on_the_page_as_given(angle):
    page, printed = draw_page(WORDS, FONT, SMALL_PAGE)
    tilted = page.rotate(angle, Image.BILINEAR, fillcolor=255)
    lines = segment_lines(tilted)
    assert len(lines) == len(printed)
    ink = np.asarray(tilted) < 128
    for line in lines:
        x0, y0, x1, y1 = line.box
        assert 0 <= x0 < x1 <= tilted.width and 0 <= y0 < y1 <= tilted.height
        assert ink[y0:y1, x0:x1].any()
        # Straightened: the crop is a single line, not a slanted band of two.
        assert line.crop.height < 2.2 * FONT.size


def test_blank_and_noise_pages_have_no_lines():
    rng = np.random.default_rng(0)
    blank = Image.new("L", (800, 1000), 255)
    noise = Image.fromarray(rng.integers(0, 256, (1000, 800), dtype=np.uint8))
    specks = Image.fromarray(np.where(rng.random((1000, 800)) < 0.05, 0, 255).astype(np.uint8))
    assert segment_lines(blank) == []
    assert segment_lines(noise) == []
    assert segment_lines(specks) == []


def test_a_rule_under_a_heading_is_not_read_as_a_line():
    page, _ = draw_page(WORDS[:300], FONT, SMALL_PAGE, title="Heading")
    ImageDraw.Draw(page).line([(60, 120), (1000, 120)], fill=0, width=2)
    lines = segment_lines(page)
    assert all(line.box[3] - line.box[1] > 10 for line in lines)


def test_a_line_too_wide_for_the_model_is_read_in_pieces_cut_at_word_gaps():
    image = draw_text("word " * 60, FONT)
    pieces = segment_lines(image, max_aspect=20)
    assert len(pieces) > 1
    assert [piece.continues for piece in pieces] == [False] + [True] * (len(pieces) - 1)
    for piece in pieces:
        x0, y0, x1, y1 = piece.box
        assert (x1 - x0) <= 20 * 1.5 * (y1 - y0)
    ink = np.asarray(image) < 128
    for left, right in itertools.pairwise(pieces):
        cut = (left.box[2] + right.box[0]) // 2
        assert not ink[:, cut].any()  # cut in a gap, not through a letter
