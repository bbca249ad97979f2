"""`shardscribe synth`: deterministic shards of rendered lines with their text."""

from __future__ import annotations

import random
import tarfile

from jobs.synth import SynthSettings, random_line, word_list, write_synth_shards
from tests.test_cli import shardscribe


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
    lines = [random_line(rng, words, 32) for _ in range(500)]
    text = "".join(lines)
    assert any(c.isdigit() for c in text) and any(c.isupper() for c in text)
    assert any(c in ",.;:!?$%#" for c in text)
    assert all(0 < len(line) <= 32 for line in lines)


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
