"""Where a page's pixels sit. A run's line boxes are pixels of the page as pdfium rendered
it at the run's dpi: the crop box (within the media box) as a viewer shows it, turned by
the page's /Rotate, origin top left. An image page's boxes are its pixels, at the dpi the
file records."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pikepdf
from PIL import Image

POINTS_PER_INCH = 72
ASSUMED_DPI = 300  # an image that does not say its resolution: a scan's usual one


@dataclass(frozen=True)
class Frame:
    """A PDF page as shown: its width and height in points once turned, and the box it
    shows in the page's own (unturned) space."""

    width: float
    height: float
    box: pikepdf.Rectangle

    def pixels(self, dpi: int) -> tuple[int, int]:
        """The page's size rendered at `dpi`, rounded up as pypdfium2 renders it."""
        scale = dpi / POINTS_PER_INCH
        return math.ceil(self.width * scale), math.ceil(self.height * scale)


def page_frame(page: pikepdf.Page) -> Frame:
    media, crop = pikepdf.Rectangle(page.mediabox), pikepdf.Rectangle(page.cropbox)
    box = pikepdf.Rectangle(
        max(crop.llx, media.llx),
        max(crop.lly, media.lly),
        min(crop.urx, media.urx),
        min(crop.ury, media.ury),
    )
    turned = page.rotation % 180 == 90  # /Rotate is a multiple of 90
    width, height = (box.height, box.width) if turned else (box.width, box.height)
    return Frame(width, height, box)


def image_dpi(image: Image.Image) -> int:
    """The resolution an image file records (horizontal; PNG's pixels per metre make 300
    dpi 299.9994, hence rounded), else ASSUMED_DPI."""
    recorded = round(image.info.get("dpi", (0, 0))[0])
    return recorded if recorded > 0 else ASSUMED_DPI
