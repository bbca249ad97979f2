"""What the fingerprint covers: settings that change outputs, and only those."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model import check_model
from pipeline.output.ledger import fingerprint_of, output_settings
from tests.conftest import job_config


def _fingerprint(model_path: str, **sections) -> str:
    config = job_config("in", "out", model_path, **sections)
    return fingerprint_of(output_settings(config, check_model(config.model)))


@pytest.mark.parametrize(
    "sections",
    [
        {"compute": {"actors": 4, "batch_size": 64, "gpus_per_actor": 0.5, "cpus_per_actor": 2}},
        {"progress": {"log_interval_s": 1}},
        {"retry": {"max_attempts": 9, "shard_timeout_s": 5}},
        {"storage": {"endpoint_url": "http://elsewhere"}},
        {"output": {"lease_ttl_s": 5}},
        {"model": {"device": "cpu"}},
    ],
)
def test_settings_that_do_not_change_outputs_keep_the_fingerprint(tiny_model, sections):
    assert _fingerprint(tiny_model, **sections) == _fingerprint(tiny_model)


@pytest.mark.parametrize(
    "sections",
    [
        {"generation": {"num_beams": 2}},
        {"generation": {"prompt": "ab"}},
        {"generation": {"do_sample": True, "seed": 3}},
        {"model": {"revision": "v2"}},
        {"model": {"dtype": "bfloat16"}},
        {"input": {"images_per_shard": 7}},
        {"input": {"image_column": "img"}},
    ],
)
def test_settings_that_change_outputs_change_the_fingerprint(tiny_model, sections):
    assert _fingerprint(tiny_model, **sections) != _fingerprint(tiny_model)


def test_another_image_processor_changes_the_fingerprint(tiny_model, tmp_path):
    copy = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    before = _fingerprint(str(copy))
    processor = json.loads((copy / "preprocessor_config.json").read_text())
    processor["size"] = {"height": 32, "width": 96}
    (copy / "preprocessor_config.json").write_text(json.dumps(processor))
    assert _fingerprint(str(copy)) != before
