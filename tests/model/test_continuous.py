"""Continuous batching gives each image the text `generate` gives it alone (greedy and
seeded sampling, with scores), whatever rows share its steps, and computes only live rows."""

from __future__ import annotations

import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from model import GenerationSettings, ModelSettings, TextGenerator, decode_image, load_model
from model.bundled import DEFAULT_MODEL, resolve_model_name
from model.continuous import ContinuousEngine, continuous_blocker, engine_for
from model.drafting import CTC_HEAD_FILE
from model.images import pixel_arrays
from model.line_frames import CONFIG_KEY
from model.shared_batches import SharedBatches, StaticEngine
from pipeline.synthetic.demo_lines import line_images

BLOCKS = [(0, 5), (5, 6), (6, 15), (15, 20), (20, 27)]  # blocks of unequal sizes
SEEDS = list(range(1000, 1027))


@pytest.fixture(scope="module")
def padded_model(tmp_path_factory) -> str:
    """The bundled model's weights as a model that reads every line padded to its input
    width (the path of checkpoints without text frames, which continuous batching
    serves): texts of realistic, varied lengths."""
    path = tmp_path_factory.mktemp("padded")
    shutil.copytree(resolve_model_name(DEFAULT_MODEL), path, dirs_exist_ok=True)
    (path / CTC_HEAD_FILE).unlink(missing_ok=True)
    config = json.loads((path / "config.json").read_text())
    config.pop(CONFIG_KEY, None)
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def line_pixels():
    """27 rendered lines of 1 to 60 characters: the bundled model ends them at different
    steps, so rows join and leave the running set at different positions."""
    images = line_images(27, seed=3)

    def pixels(loaded) -> np.ndarray:
        return pixel_arrays([decode_image(data) for data in images], loaded.image_processor)

    return pixels


def _alone(generator: TextGenerator, pixels: np.ndarray) -> list:
    return [generator.predict(pixels[i : i + 1], SEEDS[i : i + 1])[0] for i in range(len(pixels))]


def _continuous(generator: TextGenerator, pixels: np.ndarray, batch_size: int, seeds=SEEDS):
    """The rows in blocks sent from several threads at once, as an actor serves them."""
    shared = SharedBatches(ContinuousEngine(generator, lambda: batch_size))
    with ThreadPoolExecutor(len(BLOCKS)) as pool:
        futures = [pool.submit(shared.run, pixels[a:b], seeds[a:b]) for a, b in BLOCKS]
    return [prediction for future in futures for prediction in future.result()]


@pytest.mark.parametrize(
    "generation",
    [
        {"max_new_tokens": 64},
        {"max_new_tokens": 64, "do_sample": True, "top_k": 8, "temperature": 0.8},
        {"max_new_tokens": 64, "do_sample": True, "top_p": 0.9},
    ],
    ids=["greedy", "top-k", "top-p"],
)
def test_texts_and_scores_equal_generate_per_image(padded_model, line_pixels, generation):
    loaded = load_model(ModelSettings(name=padded_model))
    generator = TextGenerator(loaded, GenerationSettings(**generation), score=True)
    pixels = line_pixels(loaded)
    expected = _alone(generator, pixels)
    got = _continuous(generator, pixels, batch_size=4)
    assert [p.text for p in got] == [p.text for p in expected]
    assert len({len(p.text) for p in expected}) > 10  # lengths really differ
    assert np.allclose([p.score for p in got], [p.score for p in expected], atol=1e-5)
    # other neighbours, another batch size: each row still draws from its own seed
    rerun = _continuous(generator, pixels[::-1], 3, SEEDS[::-1])[::-1]
    assert [p.text for p in rerun] == [p.text for p in expected]


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_gpt2_model"])
def test_trocr_and_gpt2_decoders_with_a_prompt(request, line_pixels, fixture):
    """TrOCR counts positions from the cache, GPT-2 takes them as an argument; a decoder
    prompt starts every row further along."""
    loaded = load_model(ModelSettings(name=request.getfixturevalue(fixture)))
    for prompt in (None, "ab"):
        generator = TextGenerator(loaded, GenerationSettings(max_new_tokens=24, prompt=prompt))
        pixels = line_pixels(loaded)
        expected = [p.text for p in _alone(generator, pixels)]
        assert [p.text for p in _continuous(generator, pixels, batch_size=4)] == expected


def test_only_live_rows_are_computed(padded_model, line_pixels):
    """Static batches compute ended rows until the longest text ends; the running set
    computes live rows only, and stays full while rows wait."""
    loaded = load_model(ModelSettings(name=padded_model))
    static = TextGenerator(loaded, GenerationSettings(max_new_tokens=64))
    pixels = line_pixels(loaded)
    SharedBatches(StaticEngine(static.predict, lambda: 8)).run(pixels, SEEDS)
    static_stats = static.stats.take()

    continuous = TextGenerator(loaded, GenerationSettings(max_new_tokens=64))
    engine = ContinuousEngine(continuous, lambda: 8)
    SharedBatches(engine).run(pixels, SEEDS)
    stats = continuous.stats.take()
    assert static_stats.figures()["occupancy"] < 0.8
    assert stats.figures()["occupancy"] == 1.0
    # the same texts: exactly the rows static batches computed while they were live
    assert stats.decoder_rows == static_stats.live_rows
    assert stats.encoder_rows == len(pixels)
    assert engine.live == 0


def test_settings_it_cannot_run_row_by_row_stay_on_generate(tiny_model, caplog):
    loaded = load_model(ModelSettings(name=tiny_model))
    beams = TextGenerator(loaded, GenerationSettings(max_new_tokens=8, num_beams=2))
    assert continuous_blocker(beams) == "beam search (num_beams=2)"
    with caplog.at_level(logging.WARNING):
        assert isinstance(engine_for(beams, "continuous", lambda: 4), StaticEngine)
    assert "continuous batching does not run beam search (num_beams=2)" in caplog.text
    loaded.model.generation_config.no_repeat_ngram_size = 3
    greedy = TextGenerator(loaded, GenerationSettings(max_new_tokens=8))
    assert continuous_blocker(greedy) == "generation setting no_repeat_ngram_size=3"
    loaded.model.generation_config.no_repeat_ngram_size = 0
    assert isinstance(engine_for(greedy, "auto", lambda: 4), ContinuousEngine)
    assert isinstance(engine_for(greedy, "static", lambda: 4), StaticEngine)


def test_after_a_failed_call_the_set_is_empty_and_goes_on(tiny_model, line_pixels):
    loaded = load_model(ModelSettings(name=tiny_model))
    generator = TextGenerator(loaded, GenerationSettings(max_new_tokens=8))
    engine = ContinuousEngine(generator, lambda: 4)
    shared = SharedBatches(engine)
    pixels = line_pixels(loaded)
    with pytest.raises(ValueError):  # another image size than the model's
        shared.run(pixels[:3, :, :, :16], SEEDS[:3])
    assert engine.live == 0
    assert [p.text for p in shared.run(pixels[:6], SEEDS[:6])] == generator.generate(pixels[:6])
