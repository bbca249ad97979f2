"""`shardscribe bench` runs and reports its figures (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import shardscribe

KEYS = {
    "naive_ips",
    "bare_ips",
    "pipeline_ips",
    "pipeline_vs_bare",
    "bare_vs_naive",
    "driver_peak_rss_mb",
    "device",
    "dtype",
    "torch",
    "transformers",
    "ray",
}


def test_bench_json_has_every_figure_and_the_pipeline_matches_bare(tmp_path):
    args = ["bench", "--model", "tiny", "--images", "20", "--batch-size", "8", "--json"]
    result = shardscribe(*args, "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert set(figures) >= KEYS
    assert figures["images"] == 20 and figures["pipeline_equals_bare"] is True
    assert all(figures[key] > 0 for key in ("naive_ips", "bare_ips", "pipeline_ips"))
    ratio = figures["pipeline_ips"] / figures["bare_ips"]
    assert figures["pipeline_vs_bare"] == pytest.approx(ratio, abs=0.002)  # both rounded
    steps = figures["pipeline_startup_steps_s"]
    assert list(steps) == ["model_checked", "ray_started", "first_result", "first_commit"]
    assert list(steps.values()) == sorted(steps.values())
    assert steps["first_commit"] <= figures["pipeline_startup_s"] + 0.5
