"""The Pillow + numpy pixel path gives exactly the pixels of transformers' processors."""

import numpy as np
import pytest
from PIL import Image
from transformers import AutoImageProcessor, DonutImageProcessor, ViTImageProcessor

from model.images import max_aspect_ratio
from model.pixels import (
    pixel_codes,
    pixel_codes_to_values,
    pixel_values,
    processor_value_table,
    recipe_from_file,
    value_table,
)

SIZES = [(300, 40), (40, 300), (1, 1), (2000, 31), (1024, 32), (64, 64), (5000, 60), (17, 90)]


def _images(seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB") for w, h in SIZES
    ]


@pytest.mark.parametrize(
    "processor",
    [
        ViTImageProcessor(size={"height": 32, "width": 128}),
        ViTImageProcessor(size={"height": 384, "width": 384}, resample=3),
        DonutImageProcessor(
            size={"height": 32, "width": 1024},
            do_thumbnail=True,
            do_pad=True,
            do_align_long_axis=False,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        ),
        DonutImageProcessor(size={"height": 64, "width": 256}, do_align_long_axis=False),
    ],
    ids=["vit-line", "vit-square-bicubic", "donut-line", "donut-imagenet"],
)
def test_pixels_equal_the_saved_processors_for_every_shape(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    recipe = recipe_from_file(tmp_path / "preprocessor_config.json")
    assert recipe is not None
    assert recipe.max_aspect_ratio == max_aspect_ratio(loaded)
    for seed in range(3):
        images = _images(seed)
        expected = loaded(images=images, return_tensors="np")["pixel_values"]
        assert np.array_equal(pixel_values(images, recipe), expected.astype(np.float32))
        # what travels to the actors: a quarter of the bytes, the same values there
        codes = pixel_codes(images, recipe)
        assert codes.dtype == np.uint8 and codes.nbytes * 4 == expected.astype(np.float32).nbytes
        table = processor_value_table(loaded)
        assert np.array_equal(table, value_table(recipe))
        assert np.array_equal(pixel_codes_to_values(codes, table), expected)


def test_the_bundled_models_processor_is_reproduced(tmp_path):
    from model.bundled import resolve_model_name

    path = resolve_model_name("shardscribe/printed-lines")
    recipe = recipe_from_file(f"{path}/preprocessor_config.json")
    loaded = AutoImageProcessor.from_pretrained(path)
    images = _images(7)
    expected = loaded(images=images, return_tensors="np")["pixel_values"]
    assert np.array_equal(pixel_values(images, recipe), expected)


def test_processors_it_does_not_reproduce_are_left_to_transformers(tmp_path):
    ViTImageProcessor(do_center_crop=True).save_pretrained(tmp_path / "crop")
    DonutImageProcessor(do_align_long_axis=True).save_pretrained(tmp_path / "rotate")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "preprocessor_config.json").write_text(
        '{"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 224}}'
    )
    for name in ("crop", "rotate", "other", "missing"):
        assert recipe_from_file(tmp_path / name / "preprocessor_config.json") is None


def test_the_actor_turns_codes_into_the_processors_values_on_its_device(tmp_path):
    """`LoadedModel.model_input`: uint8 codes in, the processor's float32 values out,
    bit for bit; float pixels (from a processor model.pixels does not cover) as they are."""
    from model.bundled import resolve_model_name
    from model.loading import load_model
    from model.settings import ModelSettings

    loaded = load_model(ModelSettings(name="shardscribe/printed-lines"))
    processor = AutoImageProcessor.from_pretrained(resolve_model_name("shardscribe/printed-lines"))
    recipe = recipe_from_file(
        f"{resolve_model_name('shardscribe/printed-lines')}/preprocessor_config.json"
    )
    images = _images(11)
    expected = processor(images=images, return_tensors="np")["pixel_values"]
    assert np.array_equal(loaded.model_input(pixel_codes(images, recipe)).numpy(), expected)
    assert np.array_equal(loaded.model_input(expected).numpy(), expected)
