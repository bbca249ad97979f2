"""Printed text drawn with Pillow: the one way every generator of line images draws."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont


def draw_text(
    text: str,
    font: ImageFont.FreeTypeFont,
    margins: tuple[int, int, int, int] = (8, 4, 8, 4),
    background: int = 255,
    ink: int = 0,
) -> Image.Image:
    """Greyscale `text` in `font` with `margins` (left, top, right, bottom) around the
    glyphs' box, so the image is as wide and high as the text needs."""
    left, top, right, bottom = font.getbbox(text)
    margin_left, margin_top, margin_right, margin_bottom = margins
    size = (right - left + margin_left + margin_right, bottom - top + margin_top + margin_bottom)
    image = Image.new("L", size, background)
    ImageDraw.Draw(image).text((margin_left - left, margin_top - top), text, fill=ink, font=font)
    return image


def draw_line(text: str, height: int = 40, font_size: int = 28) -> Image.Image:
    """Black on white in Pillow's own font, centred in a line `height` pixels high."""
    font = ImageFont.load_default(size=font_size)
    _, top, _, bottom = font.getbbox(text)
    above = (height - (bottom - top)) // 2
    return draw_text(text, font, (8, above, 8, height - (bottom - top) - above))
