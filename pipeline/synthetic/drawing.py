"""Printed text drawn with Pillow: the one way every generator of line and page images
draws."""

from __future__ import annotations

import io
from dataclasses import dataclass

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


def png_bytes(image: Image.Image) -> bytes:
    """The image as a PNG file's bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def line_png(text: str) -> bytes:
    """`draw_line(text)` as PNG bytes: the line images of the demo, the bench and tests."""
    return png_bytes(draw_line(text))


@dataclass(frozen=True)
class PageLayout:
    """A printed page: its size in pixels, margins, columns and the gap between them,
    line spacing as a multiple of the font size, and an optional title across the
    columns."""

    width: int = 1654  # A4 at 200 dpi
    height: int = 2339
    margin: int = 160
    columns: int = 1
    gutter: int = 80
    spacing: float = 1.35


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Words of `text` filled greedily into lines at most `width` pixels wide; a word
    wider than a line is broken where it fills one."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= width:
            lines[-1] = candidate
            continue
        while font.getlength(word) > width:
            fits = max(n for n in range(1, len(word) + 1) if font.getlength(word[:n]) <= width)
            lines.append(word[: max(fits, 1)])
            word = word[max(fits, 1) :]
        lines.append(word)
    return lines


def draw_page(
    text: str, font: ImageFont.FreeTypeFont, layout: PageLayout = PageLayout(), title: str = ""
) -> tuple[Image.Image, list[str]]:
    """`text` set in columns on a white page, the title (if any) across them in a font half
    as large again; the page and the lines it holds in reading order (title first, then
    each column top to bottom). Text beyond the page is left out."""
    page = Image.new("L", (layout.width, layout.height), 255)
    draw = ImageDraw.Draw(page)
    pitch = round(font.size * layout.spacing)
    top, printed = layout.margin, []
    if title:
        title_font = font.font_variant(size=round(font.size * 1.5))
        draw.text((layout.margin, top), title, fill=0, font=title_font)
        top += 2 * round(title_font.size * layout.spacing)
        printed.append(title)
    inner = layout.width - 2 * layout.margin
    column_width = (inner - (layout.columns - 1) * layout.gutter) // layout.columns
    per_column = (layout.height - layout.margin - top) // pitch
    lines = wrap(text, font, column_width)[: per_column * layout.columns]
    for i, line in enumerate(lines):
        column, row = divmod(i, per_column)
        x = layout.margin + column * (column_width + layout.gutter)
        draw.text((x, top + row * pitch), line, fill=0, font=font)
    return page, printed + lines
