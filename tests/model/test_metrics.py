"""CER and WER against examples worked by hand."""

from __future__ import annotations

import pytest

from model.metrics import ErrorCounts, cer, wer


def test_cer_counts_substitutions_insertions_and_deletions():
    # kitten -> sitting: k->s, e->i, +g: 3 edits over 7 reference characters.
    assert cer(["kitten"], ["sitting"]) == pytest.approx(3 / 7)
    assert cer(["abc"], ["abc"]) == 0.0
    assert cer([""], ["abcd"]) == 1.0
    assert cer(["abcdef"], ["ab"]) == 2.0  # insertions can push CER above 1


def test_rates_are_totals_over_the_corpus_not_means_of_lines():
    # 1 edit in 3 chars + 1 edit in 2 chars = 2 / 5, not (1/3 + 1/2) / 2.
    assert cer(["abd", "x"], ["abc", "xy"]) == pytest.approx(2 / 5)


def test_wer_counts_word_edits():
    assert wer(["the cat sat"], ["the cat sat down"]) == pytest.approx(1 / 4)
    assert wer(["the bat sat on"], ["the cat sat"]) == pytest.approx(2 / 3)


def test_counts_add_up_and_track_exact_lines():
    counts = ErrorCounts()
    counts.add(["hello world", "abc"], ["hello world", "abd"])
    assert (counts.char_edits, counts.chars, counts.exact, counts.lines) == (1, 14, 1, 2)
    assert counts.exact_match == 0.5
    assert counts.wer == pytest.approx(1 / 3)
