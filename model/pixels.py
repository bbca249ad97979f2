"""The pixels of the two image processors line and page models use, made with Pillow and
numpy alone: ViT's (stretch to the input size) and Donut's (scale keeping the aspect
ratio, pad). Identical to transformers' Pillow backend (tested), without importing
transformers and torch, which cost a CPU task seconds at start-up. A processor config
they do not cover (another type, a centre crop, a long-axis rotation) gets None, and
the caller uses transformers' own processor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.images import widest_padded_line

SUPPORTED = {"ViTImageProcessor": "stretch", "DonutImageProcessor": "keep_aspect"}
_UNSUPPORTED_FLAGS = ("do_center_crop", "do_align_long_axis", "do_convert_rgb")


@dataclass(frozen=True)
class PixelRecipe:
    kind: str  # stretch | keep_aspect
    height: int
    width: int
    resample: int
    resize: bool
    thumbnail: bool
    pad: bool
    rescale: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @property
    def max_aspect_ratio(self) -> float | None:
        """As `model.images.max_aspect_ratio` for the processor this recipe stands for."""
        if self.kind == "keep_aspect" and self.thumbnail and self.pad:
            return widest_padded_line(self.height, self.width)
        return None


def recipe_from_file(path: str | Path) -> PixelRecipe | None:
    """The recipe of a saved `preprocessor_config.json`, or None when it is not one this
    module reproduces exactly."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    kind = SUPPORTED.get(str(config.get("image_processor_type", "")).removesuffix("Pil"))
    size = config.get("size") or {}
    if kind is None or any(config.get(flag) for flag in _UNSUPPORTED_FLAGS):
        return None
    if set(size) != {"height", "width"}:
        return None
    keep_aspect = kind == "keep_aspect"
    return PixelRecipe(
        kind=kind,
        height=int(size["height"]),
        width=int(size["width"]),
        resample=int(config.get("resample", Image.BILINEAR)),
        resize=bool(config.get("do_resize", True)),
        thumbnail=keep_aspect and bool(config.get("do_thumbnail", True)),
        pad=keep_aspect and bool(config.get("do_pad", True)),
        rescale=float(config.get("rescale_factor", 1 / 255))
        if config.get("do_rescale", True)
        else None,
        mean=tuple(config.get("image_mean", (0.5, 0.5, 0.5)))
        if config.get("do_normalize", True)
        else None,
        std=tuple(config.get("image_std", (0.5, 0.5, 0.5)))
        if config.get("do_normalize", True)
        else None,
    )


def pixel_values(images: list[Image.Image], recipe: PixelRecipe) -> np.ndarray:
    """float32 (N, 3, H, W), as the processor's `pixel_values`; RGB images in."""
    return pixel_codes_to_values(pixel_codes(images, recipe), value_table(recipe))


def pixel_codes(images: list[Image.Image], recipe: PixelRecipe) -> np.ndarray:
    """uint8 (N, 3, H, W): the resized (and padded) images before rescaling and
    normalising, a quarter of the float32 pixels' bytes. `value_table` turns them into
    the processor's values, exactly, where the model runs."""
    return np.stack([_geometry(image, recipe) for image in images])


def value_table(recipe: PixelRecipe) -> np.ndarray:
    """float32 (3, 256): the processor's value for each channel and byte. Each value
    depends only on its channel and byte, so a lookup gives exactly what rescaling and
    normalising the whole image gives."""
    return values_by_byte(recipe.rescale, recipe.mean, recipe.std)


def values_by_byte(
    rescale: float | None, mean: tuple[float, ...] | None, std: tuple[float, ...] | None
) -> np.ndarray:
    """float32 (3, 256), computed by the same operations, in the same order and types, as
    the Pillow backends of transformers' ViT and Donut processors apply to an image."""
    array = np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 1, 256))
    if rescale is not None:
        array = (array.astype(np.float64) * rescale).astype(np.float32)
    if mean is not None:
        array = array.astype(np.float32, copy=False)
        array = ((array.T - np.array(mean, np.float32)) / np.array(std, np.float32)).T
    return np.ascontiguousarray(array[:, 0], dtype=np.float32)


def processor_value_table(processor) -> np.ndarray:
    """`value_table` from a loaded image processor's own settings."""
    rescale = processor.rescale_factor if getattr(processor, "do_rescale", False) else None
    normalize = getattr(processor, "do_normalize", False)
    mean = tuple(processor.image_mean) if normalize else None
    std = tuple(processor.image_std) if normalize else None
    return values_by_byte(rescale, mean, std)


def pixel_codes_to_values(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """float32 pixels from uint8 codes (N, 3, H, W) and a (3, 256) value table."""
    return np.stack([table[channel][codes[:, channel]] for channel in range(3)], axis=1)


def _geometry(image: Image.Image, recipe: PixelRecipe) -> np.ndarray:
    if recipe.kind == "stretch":
        if recipe.resize:
            image = image.resize((recipe.width, recipe.height), resample=recipe.resample)
        return np.moveaxis(np.array(image), -1, 0)
    if recipe.resize:  # the short side to the input's short side
        image = _resize_short_side(image, min(recipe.height, recipe.width), recipe.resample)
    if recipe.thumbnail:
        image = _thumbnail(image, recipe)
    array = np.moveaxis(np.array(image), -1, 0)
    if recipe.pad:
        array = _pad(array, recipe.height, recipe.width)
    return array


def _resize_short_side(image: Image.Image, short_side: int, resample: int) -> Image.Image:
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = short_side, int(short_side * long / short)
    size = (new_short, new_long) if width <= height else (new_long, new_short)
    return image.resize(size, resample=resample)


def _thumbnail(image: Image.Image, recipe: PixelRecipe) -> Image.Image:
    """Donut's thumbnail: fit inside the input size, truncating the scaled side."""
    input_width, input_height = image.size
    height, width = min(input_height, recipe.height), min(input_width, recipe.width)
    if (height, width) == (input_height, input_width):
        return image
    if input_height > input_width:
        width = int(input_width * height / input_height)
    elif input_width > input_height:
        height = int(input_height * width / input_width)
    return image.resize((width, height), resample=recipe.resample or Image.BICUBIC)


def _pad(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centred in the input size, zeros around (before normalisation, as Donut does)."""
    delta_height, delta_width = height - array.shape[1], width - array.shape[2]
    top, left = delta_height // 2, delta_width // 2
    padding = ((0, 0), (top, delta_height - top), (left, delta_width - left))
    return np.pad(array, padding, mode="constant", constant_values=0)
