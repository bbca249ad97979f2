"""`shardscribe bench` runs and reports its figures (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from pipeline.run.runner import STARTUP_STEPS
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
    assert list(steps) == list(STARTUP_STEPS)
    assert list(steps.values()) == sorted(steps.values())
    assert steps["first_commit"] <= figures["pipeline_startup_s"] + 0.5


def test_mixed_workload_puts_static_and_continuous_side_by_side(tmp_path):
    """Lines of 1-80 characters read by the bundled model, in shards of 5 and 40: both
    engines give the same texts; continuous computes live rows only."""
    args = ["bench", "--workload", "mixed", "--images", "50", "--batch-size", "8", "--json"]
    result = shardscribe(*args, "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["texts_equal"] is True
    assert (figures["images"], figures["shard_sizes"], figures["batch_size"]) == (50, [5, 40], 8)
    static, continuous = figures["static"], figures["continuous"]
    assert continuous["occupancy"] == 1.0 and static["occupancy"] < 0.9
    assert continuous["pixel_bytes_per_image"] == static["pixel_bytes_per_image"] == 3 * 32 * 1024
    ratio = continuous["ips"] / static["ips"]
    assert figures["continuous_vs_static"] == pytest.approx(ratio, abs=0.01)
    for mode in (static, continuous):
        assert set(mode) == {
            "ips",
            "occupancy",
            "rows_per_step",
            "rows_per_encoder_call",
            "pixel_bytes_per_image",
        }
