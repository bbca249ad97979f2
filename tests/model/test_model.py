import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model import (
    GenerationSettings,
    ImageDecodeError,
    ModelLoadError,
    ModelSettings,
    TextGenerator,
    check_model,
    decode_image,
    load_model,
    pixel_arrays,
    row_seed,
)
from tests.support.data import sample_images


@pytest.fixture(scope="module")
def loaded(tiny_model):
    return load_model(ModelSettings(name=tiny_model))


@pytest.fixture(scope="module")
def pixels(loaded):
    images = [decode_image(data) for data in sample_images(6).values()]
    return pixel_arrays(images, loaded.image_processor)


def test_batched_greedy_and_beam_equal_one_image_at_a_time(loaded, pixels):
    for settings in (
        GenerationSettings(max_new_tokens=10),
        GenerationSettings(max_new_tokens=10, num_beams=3),
    ):
        generator = TextGenerator(loaded, settings)
        batched = generator.generate(pixels)
        assert batched == [generator.generate(pixels[i : i + 1])[0] for i in range(len(pixels))]
        assert len(set(batched)) > 1, "the tiny model should tell images apart"


def test_unset_settings_keep_the_checkpoint_defaults_and_warn_about_length(loaded, pixels, caplog):
    generator = TextGenerator(loaded, GenerationSettings())
    assert "max_new_tokens is unset and the model stops at max_length=20" in caplog.text
    expected = loaded.model.generate(torch.from_numpy(pixels))
    assert generator.generate(pixels) == loaded.tokenizer.batch_decode(
        expected, skip_special_tokens=True
    )


def test_sampling_is_reproducible_from_row_seeds(loaded, pixels):
    generator = TextGenerator(loaded, GenerationSettings(max_new_tokens=10, do_sample=True))
    seeds = [row_seed(7, "shard", str(i)) for i in range(len(pixels))]
    first = generator.generate(pixels, seeds)
    assert first == generator.generate(pixels[::-1], seeds[::-1])[::-1]
    assert first != generator.generate(pixels, [row_seed(8, "shard", str(i)) for i in range(6)])


def test_decoder_prompt_is_not_part_of_the_text(loaded, pixels):
    generator = TextGenerator(loaded, GenerationSettings(max_new_tokens=6, prompt="ab"))
    prompt_ids = loaded.tokenizer("ab", add_special_tokens=False)["input_ids"]
    out = loaded.model.generate(
        pixel_values=torch.from_numpy(pixels[:1]),
        decoder_input_ids=torch.tensor([prompt_ids]),
        max_new_tokens=6,
    )
    full = loaded.tokenizer.decode(out[0], skip_special_tokens=True)
    assert full.startswith("ab")
    assert generator.generate(pixels[:1]) == [full.removeprefix("ab")]


def test_missing_decoder_start_token_is_a_clear_error(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in Path(tiny_model).iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    config = json.loads((broken / "config.json").read_text())
    config.pop("decoder_start_token_id", None)
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="no decoder_start_token_id"):
        check_model(ModelSettings(name=str(broken)))


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load the config of model"):
        check_model(ModelSettings(name=str(tmp_path / "nothing-here")))


def test_local_model_identity_changes_with_its_files(tiny_model):
    assert check_model(ModelSettings(name=tiny_model)).startswith("local:")


@pytest.mark.parametrize(
    ("mode", "size"),
    [("CMYK", (8, 4)), ("L", (8, 4)), ("I;16", (8, 4)), ("P", (8, 4)), ("RGBA", (1, 1))],
)
def test_unusual_images_decode_to_rgb(mode, size):
    image = Image.new(mode, size)
    if mode == "P":
        image.info["transparency"] = 0
    buffer = io.BytesIO()
    image.save(buffer, "TIFF" if mode in ("CMYK", "I;16") else "PNG")
    decoded = decode_image(buffer.getvalue())
    assert decoded.mode == "RGB" and decoded.size == size


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image"),
        (b"not an image", "cannot decode image"),
        (sample_images(1)["s0000"][:60], "cannot decode image"),
    ],
)
def test_bad_images_raise_decode_errors(data, message):
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data)


def test_decompression_bomb_is_an_error():
    buffer = io.BytesIO()
    Image.new("L", (100, 100)).save(buffer, "PNG")
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(buffer.getvalue(), max_pixels=1000)
    assert np.asarray(decode_image(buffer.getvalue(), max_pixels=None)).shape == (100, 100, 3)
