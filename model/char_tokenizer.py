"""A character-level tokenizer for small OCR models built here (no download needed)."""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
# Printable ASCII (digits, letters, punctuation, the space), then the typographic marks,
# currency signs and accented letters that printed English text commonly holds.
CHARSET = (
    string.digits + string.ascii_letters + string.punctuation + " " + "‘’“”–—…•€£°éèàçüöäñáíóú"
)


def char_tokenizer(charset: str = CHARSET) -> PreTrainedTokenizerFast:
    """One token per character; ids 0-3 are pad, bos, eos, unk."""
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *charset])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
