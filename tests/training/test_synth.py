"""`shardscribe synth`: deterministic shards of rendered lines with their text."""

from __future__ import annotations

import io
import random
import re
import tarfile

from PIL import Image, ImageFont

from pipeline.synthetic.fonts import HELDOUT_FAMILIES, font_split, installed_families, is_heldout
from pipeline.synthetic.lines import (
    SynthSettings,
    degrade,
    font_choices,
    render_text,
    write_synth_shards,
)
from pipeline.synthetic.texts import (
    docstring_paragraphs,
    evaluation_paragraphs,
    training_line,
    word_list,
)
from tests.support.cli import shardscribe


def _members(path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_the_same_seed_writes_the_same_shards(tmp_path):
    settings = SynthSettings(lines=25, per_shard=10, seed=3)
    first = write_synth_shards(str(tmp_path / "a"), settings)
    second = write_synth_shards(str(tmp_path / "b"), settings)
    assert [p.rsplit("/", 1)[1] for p in first] == [
        "lines-00000.tar",
        "lines-00001.tar",
        "lines-00002.tar",
    ]
    for a, b in zip(first, second, strict=True):
        assert _members(a) == _members(b)
    other = write_synth_shards(str(tmp_path / "c"), SynthSettings(lines=25, per_shard=10, seed=4))
    assert _members(first[0]) != _members(other[0])


def test_every_sample_has_a_png_and_its_text(tmp_path):
    (path,) = write_synth_shards(str(tmp_path), SynthSettings(lines=8, per_shard=8, max_chars=20))
    members = _members(path)
    keys = sorted({name.split(".")[0] for name in members})
    assert keys == [f"{i:08d}" for i in range(8)]
    for key in keys:
        assert members[f"{key}.png"].startswith(b"\x89PNG")
        text = members[f"{key}.txt"].decode()
        assert 0 < len(text) <= 20 and text == text.strip()


def test_lines_mix_words_numbers_punctuation_and_case():
    rng = random.Random(0)
    words = word_list("train")
    lines = [training_line(rng, words, 100) for _ in range(500)]
    text = "".join(lines)
    assert any(c.isdigit() for c in text) and any(c.isupper() for c in text)
    assert all(any(c in text for c in marks) for marks in (",.;:!?", "$€£", "@", "“”’–"))
    assert all(0 < len(line) <= 100 and line == line.strip() for line in lines)
    lengths = sorted(len(line) for line in lines)
    assert lengths[25] <= 12 and lengths[-25] >= 80  # short labels and long lines alike


def test_lines_are_dense_in_repeated_digits_dotted_dates_and_doubled_letters():
    rng = random.Random(1)
    lines = [training_line(rng, word_list("train"), 100) for _ in range(500)]
    text = " ".join(lines)
    assert len(re.findall(r"(\d)\1", text)) >= 150  # `1996`, `#17733`, `2,252,985`
    assert re.search(r"\b\d{1,2}\.\d{1,2}\.\d{4}\b", text)  # `21.8.2000`
    assert sum(bool(re.search(r"([-=_*.~#])\1{4}", line)) for line in lines) >= 5  # rules
    doubled = sum(bool(re.search(r"([a-z])\1", line)) for line in lines)
    assert doubled >= 150, doubled


def test_a_third_of_the_lines_are_loose_crops_with_text_anywhere_in_their_height():
    rng = random.Random(2)
    font = ImageFont.load_default(size=20)
    _, top, _, bottom = font.getbbox("Hxg")
    fills = [(bottom - top) / render_text("Hxg", font, rng).height for _ in range(300)]
    # Tight crops have at most a third of the size above and below: they fill >= 0.6.
    loose = [fill for fill in fills if fill < 0.58]
    assert 25 <= len(loose) <= 60 and min(fills) >= 0.34 and min(loose) < 0.4


def test_page_line_shards_hold_the_segmenters_crops_of_printed_pages(tmp_path):
    settings = SynthSettings(lines=40, per_shard=40, seed=5, page_lines=1.0)
    (path,) = write_synth_shards(str(tmp_path), settings)
    members = _members(path)
    texts = [members[f"{i:08d}.txt"].decode() for i in range(40)]
    images = [Image.open(io.BytesIO(members[f"{i:08d}.png"])) for i in range(40)]
    # Lines of running text wrapped on a page, each a crop a few text heights high.
    assert sum(len(text) > 30 for text in texts) >= 30
    aspects = sorted(image.width / image.height for image in images)
    assert aspects[0] > 2 and aspects[20] > 8 and aspects[-1] < 64
    assert _members(write_synth_shards(str(tmp_path / "again"), settings)[0]) == members


def test_held_out_words_never_reach_training_lines():
    train, held_out = set(word_list("train")), set(word_list("heldout"))
    assert not train & held_out
    assert len(held_out) * 9 <= len(train) <= len(held_out) * 10
    assert set(word_list("all")) == train | held_out


def test_the_command_writes_shards(tmp_path):
    result = shardscribe("synth", str(tmp_path / "out"), "--lines", "5", "--per-shard", "2")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "lines-00000.tar",
        "lines-00001.tar",
        "lines-00002.tar",
    ]


def test_held_out_font_families_never_reach_training_lines():
    """infra/install-fonts.sh installs both kinds; synth renders only the split asked.
    Clones of a held-out design are held out with it."""
    families = installed_families()
    train, held_out = font_split(families, "train"), font_split(families, "heldout")
    assert set(HELDOUT_FAMILIES) <= set(held_out)
    assert {"TeX Gyre Pagella", "TeX Gyre Schola", "TeX Gyre Adventor"} <= set(held_out)
    assert all(is_heldout(family) for family in held_out)
    assert {"TeX Gyre Termes", "EB Garamond", "Roboto", "CMU Serif"} <= set(train)
    assert len(train) >= 15 and not set(train) & set(held_out)
    assert {"DejaVu Sans", "Liberation Serif", "FreeMono", "Nimbus Sans Narrow"} <= set(train)
    rendered = {path for family in font_choices(SynthSettings()) for path in family}
    assert None in rendered  # Pillow's own font, which the demo uses
    assert rendered - {None} == {path for paths in train.values() for path in paths}
    evaluation = {
        path for family in font_choices(SynthSettings(font_split="heldout")) for path in family
    }
    assert evaluation - {None} == {path for paths in held_out.values() for path in paths}


def test_evaluation_text_is_not_training_text():
    training, evaluation = set(docstring_paragraphs()), set(evaluation_paragraphs())
    assert len(training) > 5000 and len(evaluation) > 5000
    assert not training & evaluation


def test_degradation_changes_almost_every_line_and_keeps_it_greyscale():
    font = ImageFont.truetype(font_split(installed_families(), "train")["DejaVu Sans"][0], 32)
    clean = render_text("Invoice No. 4471, due 2026-12-01", font, random.Random(0))
    scanned = [degrade(clean, random.Random(seed)) for seed in range(50)]
    assert all(image.mode == "L" for image in scanned)
    assert sum(image.tobytes() != clean.tobytes() for image in scanned) >= 45
