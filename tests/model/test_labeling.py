"""Labeling: scores, ranked candidates and choices mode agree with a per-image reference
computed the plain way (tests/support/reference.py), in the model and end to end."""

from __future__ import annotations

import collections

import pyarrow.parquet as pq
import pytest
import torch
from transformers import VisionEncoderDecoderModel

from model import GenerationSettings, ModelSettings, TextGenerator, load_model, pixel_arrays
from model.choices import ChoiceScorer
from model.images import decode_image
from pipeline.exceptions import ConfigError
from pipeline.run.runner import run_job
from tests.conftest import job_config
from tests.support.data import sample_images, webdataset_members, write_tar
from tests.support.reference import Reference

MAX_TOKENS = 10
# Same length, so no label wins by being short and the probabilities stay spread out.
LABELS = ["cat", "dog", "car", "sun", "x42"]
IMAGES = sample_images(6)


@pytest.fixture(scope="module")
def stopping_model(tiny_model, tmp_path_factory) -> str:
    """The tiny model, changed so that some texts end early with end-of-sequence: its eos
    row of the output layer copies the row of the token it generates most, so eos ties
    with that token wherever it would come (greedy picks eos, the lower id)."""
    model = VisionEncoderDecoderModel.from_pretrained(tiny_model)
    loaded = load_model(ModelSettings(name=tiny_model))
    pixels = torch.from_numpy(_pixels(loaded))
    generated = model.generate(pixels, max_new_tokens=MAX_TOKENS)[:, 1:]
    common = collections.Counter(generated.flatten().tolist()).most_common(1)[0][0]
    eos = model.generation_config.eos_token_id
    with torch.no_grad():
        weight = model.decoder.get_output_embeddings().weight
        weight[eos] = weight[common]
    path = tmp_path_factory.mktemp("models") / "stopping"
    model.save_pretrained(path)
    loaded.tokenizer.save_pretrained(path)
    loaded.image_processor.save_pretrained(path)
    return str(path)


def _pixels(loaded):
    return pixel_arrays([decode_image(data) for data in IMAGES.values()], loaded.image_processor)


@pytest.fixture(scope="module")
def stopping(stopping_model):
    loaded = load_model(ModelSettings(name=stopping_model))
    return loaded, _pixels(loaded), Reference(stopping_model)


def test_the_stopping_model_gives_texts_of_several_lengths(stopping):
    loaded, pixels, _ = stopping
    texts = TextGenerator(loaded, GenerationSettings(max_new_tokens=MAX_TOKENS)).generate(pixels)
    lengths = {len(text) for text in texts}
    assert 0 in lengths and MAX_TOKENS in lengths, texts


@pytest.mark.parametrize("beams", [1, 3])
def test_score_is_the_mean_token_logprob_of_the_text_and_its_end(stopping, beams):
    loaded, pixels, reference = stopping
    settings = GenerationSettings(max_new_tokens=MAX_TOKENS, num_beams=beams)
    plain = TextGenerator(loaded, settings).generate(pixels)
    predictions = TextGenerator(loaded, settings, score=True).predict(pixels)
    assert [p.text for p in predictions] == plain  # scoring never changes the text
    for prediction, data in zip(predictions, IMAGES.values(), strict=True):
        expected = reference.mean_logprob(data, prediction.text, MAX_TOKENS)
        assert prediction.score == pytest.approx(expected, abs=1e-5)
        assert prediction.candidates is None


def test_candidates_are_ranked_beams_each_with_its_own_score(stopping):
    loaded, pixels, reference = stopping
    settings = GenerationSettings(max_new_tokens=MAX_TOKENS, num_beams=4, num_return_sequences=3)
    predictions = TextGenerator(loaded, settings).predict(pixels)
    best_beam = TextGenerator(loaded, settings.model_copy(update={"num_return_sequences": 1}))
    assert [p.text for p in predictions] == best_beam.generate(pixels)
    for prediction, data in zip(predictions, IMAGES.values(), strict=True):
        candidates = prediction.candidates
        assert len(candidates) == 3 and len({c["text"] for c in candidates}) == 3
        assert (candidates[0]["text"], candidates[0]["score"]) == (
            prediction.text,
            prediction.score,
        )
        scores = [c["score"] for c in candidates]
        assert scores == sorted(scores, reverse=True)
        for candidate in candidates:
            expected = reference.mean_logprob(data, candidate["text"], MAX_TOKENS)
            assert candidate["score"] == pytest.approx(expected, abs=1e-5)


def test_sampled_candidates_are_sorted_by_score(stopping):
    loaded, pixels, _ = stopping
    settings = GenerationSettings(max_new_tokens=MAX_TOKENS, do_sample=True, num_return_sequences=4)
    predictions = TextGenerator(loaded, settings).predict(pixels, seeds=list(range(len(pixels))))
    for prediction in predictions:
        scores = [c["score"] for c in prediction.candidates]
        assert scores == sorted(scores, reverse=True) and prediction.score == scores[0]


@pytest.mark.parametrize("positions_per_pass", [4096, 16])
def test_choices_agree_with_scoring_each_label_alone(stopping, monkeypatch, positions_per_pass):
    # 16 positions: one label per decoder pass; 4096: every label in one pass.
    monkeypatch.setattr("model.choices.POSITIONS_PER_PASS", positions_per_pass)
    loaded, pixels, reference = stopping
    predictions = ChoiceScorer(loaded, LABELS).predict(pixels)
    for prediction, data in zip(predictions, IMAGES.values(), strict=True):
        expected = reference.choice_probs(data, LABELS)
        assert [c["label"] for c in prediction.choices] == LABELS
        assert [c["prob"] for c in prediction.choices] == pytest.approx(expected, abs=1e-6)
        best = max(range(len(LABELS)), key=expected.__getitem__)
        assert (prediction.text, prediction.label_prob) == pytest.approx(
            (LABELS[best], expected[best]), abs=1e-6
        )
        assert prediction.score == pytest.approx(
            reference.mean_logprob(data, LABELS[best], 10**6), abs=1e-5
        )
    spread = [max(c["prob"] for c in p.choices) for p in predictions]
    assert min(spread) < 0.99, "the labels should not be decided by length alone"


@pytest.mark.usefixtures("ray_cluster")
def test_label_job_keeps_passthrough_and_writes_the_distribution(stopping_model, tmp_path):
    write_tar(tmp_path / "in" / "a.tar", webdataset_members(IMAGES))
    choices = tmp_path / "labels.txt"
    choices.write_text("\n".join(LABELS) + "\n\n")  # blank lines are not labels
    config = job_config(  # the label preset's candidates do not apply to choices
        tmp_path / "in",
        tmp_path / "out",
        stopping_model,
        label={"choices": str(choices)},
        generation={"num_beams": 4, "num_return_sequences": 3},
    )
    assert run_job(config).exit_code == 0
    table = pq.read_table(tmp_path / "out" / "a.parquet")
    assert table.column_names == [
        "shard", "key", "text", "error", "score", "label_prob", "choices", "json", "txt",
    ]  # fmt: skip
    reference = Reference(stopping_model)
    for row in table.to_pylist():
        expected = reference.choice_probs(IMAGES[row["key"]], LABELS)
        assert [c["prob"] for c in row["choices"]] == pytest.approx(expected, abs=1e-6)
        assert row["text"] == LABELS[max(range(len(LABELS)), key=expected.__getitem__)]
        assert row["txt"] == f"text of {row['key']}"


@pytest.mark.usefixtures("ray_cluster")
def test_scored_job_with_candidates(stopping_model, tmp_path):
    write_tar(tmp_path / "in" / "a.tar", webdataset_members(IMAGES))
    config = job_config(
        tmp_path / "in",
        tmp_path / "out",
        stopping_model,
        generation={"max_new_tokens": MAX_TOKENS, "num_beams": 3, "num_return_sequences": 2},
    )
    assert run_job(config).exit_code == 0
    rows = pq.read_table(tmp_path / "out" / "a.parquet").to_pylist()
    reference = Reference(stopping_model)
    assert len(rows) == len(IMAGES)
    for row in rows:
        data = IMAGES[row["key"]]
        assert row["text"] == reference.text(data, max_new_tokens=MAX_TOKENS, num_beams=3)
        assert row["candidates"][0]["text"] == row["text"]
        assert row["score"] == pytest.approx(
            reference.mean_logprob(data, row["text"], MAX_TOKENS), abs=1e-5
        )


@pytest.mark.parametrize(
    ("label", "generation", "message"),
    [
        ({"choices": "/nonexistent/labels.txt"}, {}, "cannot read the choices file"),
        ({"choices": ["a", "b", "a"]}, {}, "labels given more than once: a"),
        ({"choices": []}, {}, "no labels"),
        ({}, {"num_beams": 2, "num_return_sequences": 3}, "needs generation.num_beams >= 3"),
    ],
)
def test_labeling_config_errors_name_the_problem(tmp_path, label, generation, message):
    with pytest.raises(ConfigError, match=message):
        job_config(tmp_path, tmp_path / "out", "m", label=label, generation=generation)
