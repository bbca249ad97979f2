"""The bundled OCR model: listed, the default of `run` and the demo, and it reads text."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

from benchmarks.ocr_vs_tesseract import table
from model.bundled import DEFAULT_MODEL, bundled_models
from model.metrics import cer
from pipeline.config_loading import validate_config
from pipeline.exceptions import ConfigError
from pipeline.synthetic.demo_lines import write_sample_shards
from tests.support.cli import shardscribe

# Measured on the demo's 24 lines: CER 1.5 % (three lines with a letter or digit dropped); the
# limit leaves room for float rounding elsewhere, never for a model that does not read.
DEMO_CER_LIMIT = 0.05


def test_models_lists_the_bundled_model_with_its_card_and_figures():
    result = shardscribe("models", "--json")
    assert result.returncode == 0, result.stderr
    (listed,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert listed["name"] == DEFAULT_MODEL == bundled_models()[0].name
    assert listed["weights_mb"] <= 20
    assert listed["card"].endswith("printed-lines/README.md")
    assert listed["evaluation"]["readers"]["tesseract"]["groups"]["clean"]["lines"] == 240


def test_the_model_cards_evaluation_table_is_its_evaluation_json():
    """The card's figures are the ones `benchmarks.model_card` wrote from the benchmark,
    not edited by hand since."""
    for bundled in bundled_models():
        figures = json.loads((bundled.path / "evaluation.json").read_text())
        assert table(figures) in bundled.card.read_text()


def test_run_defaults_to_the_bundled_model_and_records_its_name(tmp_path):
    shards = write_sample_shards(tmp_path / "input", shards=2, per_shard=6)
    result = shardscribe("run", "--input", str(shards), "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [
        r
        for f in sorted((tmp_path / "out").glob("*.parquet"))
        for r in pq.read_table(f).to_pylist()
    ]
    assert len(rows) == 12
    assert cer([r["text"] for r in rows], [r["txt"] for r in rows]) <= DEMO_CER_LIMIT
    recorded = json.loads((tmp_path / "out" / "_shardscribe" / "run.json").read_text())
    # The name, not the install-dependent path, so a rerun elsewhere matches.
    assert recorded["settings"]["model"]["name"] == DEFAULT_MODEL


def test_the_demo_prints_real_text(tmp_path):
    result = shardscribe("demo", "--dir", str(tmp_path / "demo"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rate = re.search(r"character error rate over all 24 lines: ([\d.]+)%", result.stdout)
    assert rate, result.stdout
    assert float(rate.group(1)) / 100 <= DEMO_CER_LIMIT


def test_an_unknown_bundled_name_lists_the_bundled_ones():
    with pytest.raises(ConfigError, match=r"no bundled model 'shardscribe/nope' \(bundled: "):
        validate_config(
            {"input": {"uri": "x"}, "output": {"uri": "y"}, "model": {"name": "shardscribe/nope"}}
        )
