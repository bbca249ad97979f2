"""Building a model to train: built-in configs, checkpoints, special tokens, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    GPT2Config,
    GPT2LMHeadModel,
    VisionEncoderDecoderConfig,
    VisionEncoderDecoderModel,
)

from model.architectures import DECODERS, ENCODERS, Encoder
from model.char_tokenizer import BOS_ID, EOS_ID, PAD_ID, char_tokenizer
from model.loading import ModelLoadError
from pipeline.training.build import build_model, copy_weights
from pipeline.training.objective import IGNORE_INDEX, encode_labels


def test_builtin_parts_pair_with_the_tokenizers_ids():
    parts = build_model(encoder="vit-line-tiny", decoder="trocr-char-tiny")
    config = parts.model.config
    assert (config.decoder_start_token_id, config.pad_token_id, config.eos_token_id) == (
        BOS_ID,
        PAD_ID,
        EOS_ID,
    )
    assert config.vocab_size == len(parts.tokenizer) == len(char_tokenizer())
    assert parts.image_processor.size["height"] == 32


def test_a_saved_trained_model_fine_tunes_from_its_checkpoint(tmp_path):
    built = build_model(encoder="vit-line-tiny", decoder="trocr-char-tiny")
    built.model.save_pretrained(tmp_path)
    built.image_processor.save_pretrained(tmp_path)
    built.tokenizer.save_pretrained(tmp_path)
    again = build_model(checkpoint=str(tmp_path))
    assert again.model.config.decoder_start_token_id == BOS_ID


def test_a_decoder_checkpoint_pairs_with_a_builtin_encoder_and_grows_its_vocabulary(tmp_path):
    """A GPT-2 decoder whose vocabulary is smaller than its tokenizer's: resized, ids set."""
    config = GPT2Config(vocab_size=50, n_embd=32, n_layer=1, n_head=2, add_cross_attention=True)
    GPT2LMHeadModel(config).save_pretrained(tmp_path)
    char_tokenizer().save_pretrained(tmp_path)
    parts = build_model(encoder="vit-line-tiny", decoder=str(tmp_path))
    assert parts.model.config.vocab_size == len(char_tokenizer()) > 50
    assert parts.model.config.decoder_start_token_id == BOS_ID


def test_an_unknown_part_is_named_with_the_builtins():
    with pytest.raises(
        ModelLoadError, match=r"'no-such-encoder'.*Built-in encoders: vit-line-tiny"
    ):
        build_model(encoder="no-such-encoder", decoder="trocr-char-tiny")


def test_labels_end_with_eos_and_pad_with_ignore_index():
    encoded = encode_labels(["ab", "abcdef"], char_tokenizer(), max_tokens=5)
    tokenizer = char_tokenizer()
    a, b = tokenizer.convert_tokens_to_ids(["a", "b"])
    assert encoded.labels[0].tolist() == [a, b, EOS_ID, IGNORE_INDEX, IGNORE_INDEX]
    assert encoded.too_long.tolist() == [False, True]


def _white_with_black_square(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    image.paste((0, 0, 0), (0, 0, height, height))  # a square at the left end
    return image


def test_a_long_line_encoder_keeps_the_aspect_ratio_and_pads(tmp_path):
    """300x50 -> 192x32 (not stretched to 1024), centred on black padding; the saved
    processor, loaded by AutoImageProcessor, gives the same pixels."""
    processor = ENCODERS["vit-line-long"].image_processor()
    image = _white_with_black_square(300, 50)
    pixels = processor(images=[image], return_tensors="np")["pixel_values"][0, 0]
    assert pixels.shape == (32, 1024)
    left = (1024 - 192) // 2
    assert (pixels[:, :left] == -1).all() and (pixels[:, left + 192 :] == -1).all()
    assert (pixels[:, left + 2 : left + 30] == -1).all()  # the square: 32 px wide, not 109
    assert (pixels[:, left + 34 : left + 190] == 1).all()  # then the white line
    processor.save_pretrained(tmp_path)
    again = AutoImageProcessor.from_pretrained(tmp_path)(images=[image], return_tensors="np")
    np.testing.assert_array_equal(again["pixel_values"][0, 0], pixels)


def test_a_line_wider_than_the_input_is_scaled_down_whole():
    processor = ENCODERS["vit-line-long"].image_processor()
    pixels = processor(images=[_white_with_black_square(3000, 60)], return_tensors="np")
    rows_with_content = (pixels["pixel_values"][0, 0] != -1).any(axis=1).sum()
    assert rows_with_content == 60 * 1024 // 3000  # 20 rows of 32: height follows the width


def test_warm_start_copies_what_fits_and_interpolates_the_position_table(tmp_path):
    """A 32x128 checkpoint (32 frames) into a 32x256 encoder (64 frames) with a larger
    vocabulary: layers copied, positions stretched (class token and both ends kept),
    the old vocabulary in the first rows."""
    old = build_model(encoder="vit-line-tiny", decoder="trocr-char-tiny")
    old.model.save_pretrained(tmp_path)
    old.tokenizer.save_pretrained(tmp_path)
    wider = Encoder(width=32, layers=1, heads=2, image_size=(32, 256), keep_aspect=True)
    decoder = DECODERS["trocr-char-tiny"].config(len(char_tokenizer()) + 5)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(wider.config(), decoder)
    new = VisionEncoderDecoderModel(config)
    copied = copy_weights(new, str(tmp_path))
    assert copied == len(new.state_dict())
    before, after = old.model.state_dict(), new.state_dict()
    query = "encoder.layers.0.attention.q_proj.weight"
    assert torch.equal(after[query], before[query])
    positions = "encoder.embeddings.position_embeddings"
    assert before[positions].shape == (1, 33, 32) and after[positions].shape == (1, 65, 32)
    for index_after, index_before in ((0, 0), (1, 1), (-1, -1)):
        assert torch.allclose(after[positions][0, index_after], before[positions][0, index_before])
    tokens = "decoder.model.decoder.embed_tokens.weight"
    rows = len(char_tokenizer())
    assert torch.equal(after[tokens][:rows], before[tokens])
