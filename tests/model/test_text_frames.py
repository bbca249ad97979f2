"""A text-frame model reads each line from its own frames: a line's text is the same in
any batch, checked drafts give what greedy `generate` gives on the line alone, and a
right draft costs one decoder pass."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, VisionEncoderDecoderModel
from transformers.modeling_outputs import BaseModelOutput

from model import GenerationSettings, ModelSettings, TextGenerator, decode_image, load_model
from model.architectures import Encoder
from model.choices import ChoiceScorer
from model.continuous import ContinuousEngine, engine_for
from model.drafting import WINDOW, checked_drafts, save_ctc_head
from model.images import pixel_arrays
from model.line_frames import enable_text_frames, encode_lines, frame_spans
from model.shared_batches import StaticEngine
from tests.support.data import text_image

WORDS = ["a", "of", "line", "printed", "shard scribe", "text frames", "the widest line here"]
MAX_NEW = 24


@pytest.fixture(scope="module")
def frame_model(tmp_path_factory, tiny_model) -> str:
    """The tiny test model as a text-frame model: a 32x128 input that lines are padded
    into (keeping their aspect), with a random CTC head saved beside it."""
    path = tmp_path_factory.mktemp("frame-model")
    model = VisionEncoderDecoderModel.from_pretrained(tiny_model)
    enable_text_frames(model, [-1.0, -1.0, -1.0])
    model.save_pretrained(path)
    Encoder(32, 2, 2, (32, 128), keep_aspect=True).image_processor().save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(path)
    torch.manual_seed(0)
    save_ctc_head(torch.nn.Linear(32, model.config.decoder.vocab_size), path)
    return str(path)


@pytest.fixture(scope="module")
def loaded(frame_model):
    return load_model(ModelSettings(name=frame_model))


@pytest.fixture(scope="module")
def pixels(loaded) -> np.ndarray:
    images = [decode_image(text_image(w, width=12 * len(w) + 8, height=24)) for w in WORDS]
    return pixel_arrays(images, loaded.image_processor)


def _alone(loaded, pixels: np.ndarray, **generate) -> list[str]:
    """Each line's text from `generate` on its own frames, one line at a time."""
    texts = []
    for row in range(len(pixels)):
        encoded = encode_lines(loaded.model, loaded.model_input(pixels[row : row + 1]))
        torch.manual_seed(100 + row)
        ids = loaded.model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoded.states),
            max_new_tokens=MAX_NEW,
            **generate,
        )
        texts += loaded.tokenizer.batch_decode(ids, skip_special_tokens=True)
    return texts


def test_lines_keep_the_frames_that_hold_them(loaded):
    values = torch.full((3, 3, 32, 128), -1.0)
    values[0, :, :, 40:70] = 0.5  # columns 40-69: frames 10-17
    values[1, :, 5, 0:128] = 0.0  # ink across the whole input
    spans = frame_spans(loaded.model, values)  # row 2 holds no ink
    assert spans == [(10, 18), (0, 32), (12, 20)]


def test_checked_drafts_read_as_greedy_generate_reads_each_line_alone(loaded, pixels):
    generator = TextGenerator(loaded, GenerationSettings(max_new_tokens=MAX_NEW))
    assert generator.drafts
    texts = generator.generate(pixels)
    assert texts == _alone(loaded, pixels)
    assert len(set(texts)) >= 5  # the random model tells most lines apart


@pytest.mark.parametrize(
    "generation",
    [{"num_beams": 2}, {"do_sample": True, "top_k": 5}],
    ids=["beams", "sampling"],
)
def test_other_decoding_reads_each_lines_own_frames(loaded, pixels, generation):
    generator = TextGenerator(loaded, GenerationSettings(max_new_tokens=MAX_NEW, **generation))
    assert not generator.drafts
    seeds = [100 + row for row in range(len(pixels))]
    assert generator.generate(pixels, seeds) == _alone(loaded, pixels, **generation)


def test_a_lines_text_is_the_same_in_any_batch(loaded, pixels):
    generator = TextGenerator(loaded, GenerationSettings(max_new_tokens=MAX_NEW))
    together = generator.generate(pixels)
    reversed_order = generator.generate(pixels[::-1].copy())[::-1]
    in_pairs = [generator.generate(pixels[[row, (row + 3) % len(pixels)]])[0] for row in range(7)]
    assert together == reversed_order == in_pairs


def test_a_right_draft_is_taken_as_it_is_and_a_wrong_one_is_corrected(loaded, pixels):
    model = loaded.model
    encoded = encode_lines(model, loaded.model_input(pixels))
    greedy = [
        loaded.tokenizer(text, add_special_tokens=False).input_ids
        for text in _alone(loaded, pixels)
    ]
    exact = checked_drafts(model, encoded, greedy, MAX_NEW)
    assert exact.drafted_rows == len(WORDS)
    # a pass checks a window of each draft: the longest text takes that many passes
    assert exact.passes == -(-max(map(len, greedy)) // WINDOW)
    assert loaded.tokenizer.batch_decode(exact.sequences, skip_special_tokens=True) == [
        loaded.tokenizer.decode(tokens) for tokens in greedy
    ]
    changes = [
        lambda tokens: tokens[:1] + tokens[2:],  # a token lost
        lambda tokens: tokens[:1] + tokens[:1] + tokens[1:],  # a token doubled
        lambda tokens: [5, *tokens[1:]],  # a token swapped
        lambda tokens: [],  # no draft at all
        lambda tokens: tokens[::-1],
        lambda tokens: tokens,
        lambda tokens: tokens[:-1],
    ]
    wrong = [change(tokens) for change, tokens in zip(changes, greedy, strict=True)]
    corrected = checked_drafts(model, encoded, wrong, MAX_NEW)
    assert torch.equal(corrected.sequences, exact.sequences)
    # the lines whose draft was left as it was (or reversed into itself)
    assert corrected.drafted_rows == sum(w == g for w, g in zip(wrong, greedy, strict=True))
    assert corrected.passes > exact.passes


def test_choices_are_scored_on_each_lines_own_frames(loaded, pixels):
    labels = ["a", "line", "printed"]
    predictions = ChoiceScorer(loaded, labels).predict(pixels)
    model, tokenizer = loaded.model, loaded.tokenizer
    start, eos = (
        model.generation_config.decoder_start_token_id,
        model.generation_config.eos_token_id,
    )
    for row, prediction in enumerate(predictions):
        encoded = encode_lines(model, loaded.model_input(pixels[row : row + 1]))
        totals = []
        for label in labels:
            ids = torch.tensor(
                [[start, *tokenizer(label, add_special_tokens=False).input_ids, eos]]
            )
            with torch.inference_mode():
                logits = model.decoder(input_ids=ids[:, :-1], encoder_hidden_states=encoded.states)
            logprobs = logits.logits.float().log_softmax(-1)[0]
            totals.append(float(logprobs.gather(1, ids[0, 1:, None]).sum()))
        expected = torch.tensor(totals).softmax(0).tolist()
        assert [c["prob"] for c in prediction.choices] == pytest.approx(expected, abs=1e-5)


def test_text_frame_models_run_on_static_batches(loaded, caplog):
    generator = TextGenerator(loaded, GenerationSettings(max_new_tokens=8))
    assert isinstance(engine_for(generator, "auto", lambda: 4), StaticEngine)
    with caplog.at_level(logging.WARNING):
        assert isinstance(engine_for(generator, "continuous", lambda: 4), StaticEngine)
    assert "continuous batching does not run a text-frame model" in caplog.text
    with pytest.raises(ValueError, match="does not read text frames"):
        ContinuousEngine(generator, lambda: 4)
