"""Image bytes -> RGB picture -> the model's pixel array."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# Pillow's own default; the pipeline may raise or lower it from the config.
DEFAULT_MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can read, or the image is unsafe to open."""


class ImageTooWideError(ImageDecodeError):
    """A line image wider than the model can read: it would be scaled below half the
    model's input height to fit its width."""


def decode_image(
    data: bytes | None, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
) -> Image.Image:
    """Decode bytes to an RGB image, honouring EXIF orientation.

    Pillow's decompression-bomb limit is enforced as an error (not a warning), so a
    hostile image becomes a row error instead of eating the worker's memory.
    """
    if not data:
        raise ImageDecodeError("empty image (0 bytes)")
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(f"image too large (decompression bomb limit): {error}") from error
    except Image.UnidentifiedImageError:
        raise ImageDecodeError("cannot decode image: not a recognised image format") from None
    except Exception as error:  # Pillow raises many types (OSError, SyntaxError, ...) for bad data
        raise ImageDecodeError(f"cannot decode image: {type(error).__name__}: {error}") from error
    return to_rgb(ImageOps.exif_transpose(image))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for every mode: transparency onto white, 16-bit scaled down, CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / max(peak, 255.0))).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def pixel_arrays(images: list[Image.Image], image_processor: Any) -> np.ndarray:
    """Run the checkpoint's own image processor; float32 array (N, C, H, W)."""
    pixels = image_processor(images=images, return_tensors="np")["pixel_values"]
    return np.asarray(pixels, dtype=np.float32)


def max_aspect_ratio(image_processor: Any) -> float | None:
    """The widest image (width / height) a processor that keeps the aspect ratio and pads
    (`do_thumbnail` + `do_pad`, as Donut's) gives its model at half the input height or
    more; None for processors that stretch every image to their size."""
    if not (
        getattr(image_processor, "do_thumbnail", False)
        and getattr(image_processor, "do_pad", False)
    ):
        return None
    size = image_processor.size
    return widest_padded_line(size["height"], size["width"])


def widest_padded_line(height: int, width: int) -> float:
    """The widest image (width / height) that, scaled to fit a `height` x `width` input
    keeping its aspect ratio, is still at least half the input height."""
    return 2 * width / height


def check_fits(image: Image.Image, limit: float | None) -> None:
    """Raise ImageTooWideError for a line wider than `limit` (width / height; from
    `max_aspect_ratio`), which the model could only read squeezed illegibly."""
    if limit is not None and image.width > limit * image.height:
        raise ImageTooWideError(
            f"line image too wide for the model: {image.width}x{image.height} px "
            f"({image.width / image.height:.0f}:1); it reads lines up to {limit:.0f}:1 "
            "(width:height); cut the line into pieces"
        )
