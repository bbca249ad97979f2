"""What the fingerprint covers: settings that change outputs, and only those."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model import check_model
from pipeline.job_config import FREE_FIELDS, OUTPUT_FIELDS, JobConfig
from pipeline.output.ledger import fingerprint_of, run_settings
from pipeline.output.status import format_failures
from tests.conftest import job_config


def _fingerprint(model_path: str, **sections) -> str:
    config = job_config("in", "out", model_path, **sections)
    return fingerprint_of(run_settings(config, check_model(config.model)))


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
        {"label": {"score": True}},
        {"label": {"choices": ["cat", "dog"]}},
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


def test_every_job_setting_either_changes_the_output_or_may_change_freely():
    """A new field of the job config must be put in one of the two lists."""
    fields = {
        (section, name)
        for section, info in JobConfig.model_fields.items()
        for name in info.annotation.model_fields
    }
    output = {(s, name) for s, names in OUTPUT_FIELDS.items() for name in names}
    free = {(s, name) for s, names in FREE_FIELDS.items() for name in names}
    assert not output & free
    assert fields - output - free == set(), "classify these in pipeline/job_config.py"
    assert (output | free) - fields == set(), "these are no fields of the job config"


def test_outputs_made_before_labels_joined_the_fingerprint_keep_theirs(tiny_model):
    """Default labeling settings add nothing, so an older output's fingerprint matches."""
    config = job_config("in", "out", tiny_model)
    assert "label" not in run_settings(config, check_model(config.model))


def test_the_failures_table_stays_aligned_with_long_keys():
    records = [
        {"kind": "shard", "error_class": "storage", "attempts": 3, "shard": "a/" * 30 + "x",
         "key": None, "error": "storage: timed out"},
        {"kind": "row", "error_class": "decode", "attempts": 1, "shard": "s",
         "key": "k" * 40, "error": "decode: not an image"},
    ]  # fmt: skip
    lines = format_failures(records).splitlines()
    starts = {
        line.index(text) for line, text in zip(lines, ("error", "storage:", "decode:"), strict=True)
    }
    assert len(starts) == 1 and lines[2].split()[4] == "k" * 40
