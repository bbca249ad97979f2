"""Building a model to train: built-in configs, checkpoints, special tokens, errors."""

from __future__ import annotations

import pytest
from transformers import GPT2Config, GPT2LMHeadModel

from model.build import build_model
from model.char_tokenizer import BOS_ID, EOS_ID, PAD_ID, char_tokenizer
from model.loading import ModelLoadError
from model.training import IGNORE_INDEX, encode_labels


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
