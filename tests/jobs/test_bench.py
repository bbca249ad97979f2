"""`shardscribe bench` runs and reports its figures (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from jobs.bench_report import format_table
from pipeline.run.runner import STARTUP_STEPS
from tests.support.cli import shardscribe

# Every figure, in the order --json prints them.
KEYS = [
    "model",
    "images",
    "images_per_shard",
    "batch_size",
    "num_beams",
    "max_new_tokens",
    "actors",
    "storage",
    "naive_ips",
    "bare_ips",
    "cold_bare_ips",
    "pipeline_ips",
    "pipeline_vs_bare",
    "pipeline_vs_cold_bare",
    "bare_vs_naive",
    "pipeline_startup_s",
    "pipeline_startup_steps_s",
    "cold_bare_startup_s",
    "cold_bare_startup_steps_s",
    "pipeline_steady_ips",
    "pipeline_steady_vs_bare",
    "pipeline_equals_bare",
    "pipeline_equals_cold_bare",
    "driver_peak_rss_mb",
    "device",
    "device_name",
    "dtype",
    "cpus",
    "torch",
    "transformers",
    "ray",
]


def test_bench_json_has_every_figure_and_the_pipeline_matches_bare(tmp_path):
    args = ["bench", "--model", "tiny", "--images", "20", "--batch-size", "8", "--json"]
    result = shardscribe(*args, "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert list(figures) == KEYS
    assert figures["images"] == 20
    assert figures["pipeline_equals_bare"] is figures["pipeline_equals_cold_bare"] is True
    modes = ("naive_ips", "bare_ips", "cold_bare_ips", "pipeline_ips")
    assert all(figures[key] > 0 for key in modes)
    for mode in ("bare", "cold_bare"):
        ratio = figures["pipeline_ips"] / figures[f"{mode}_ips"]
        assert figures[f"pipeline_vs_{mode}"] == pytest.approx(ratio, abs=0.002)  # rounded
    cold = figures["cold_bare_startup_steps_s"]
    assert list(cold) == ["imported", "loaded", "first_batch"]
    assert list(cold.values()) == sorted(cold.values())
    assert cold["first_batch"] == figures["cold_bare_startup_s"]
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
            "preprocess_s",
            "encoder_s",
            "decoder_s",
        }
        assert mode["decoder_s"] > 0


def test_the_table_shows_both_start_ups_and_both_ratios():
    figures = {
        "model": "small",
        "images": 128,
        "batch_size": 16,
        "num_beams": 1,
        "max_new_tokens": 32,
        "naive_ips": 3.5,
        "bare_ips": 4.0,
        "cold_bare_ips": 2.9,
        "pipeline_ips": 3.0,
        "pipeline_vs_bare": 0.75,
        "pipeline_vs_cold_bare": 1.034,
        "bare_vs_naive": 1.143,
        "pipeline_startup_s": 12.31,
        "pipeline_startup_steps_s": {"ray_started": 0.0, "first_commit": 12.3},
        "cold_bare_startup_s": 10.52,
        "cold_bare_startup_steps_s": {"imported": 4.04, "loaded": 4.96, "first_batch": 10.52},
        "pipeline_steady_ips": 4.1,
        "pipeline_steady_vs_bare": 1.03,
        "pipeline_equals_bare": True,
        "pipeline_equals_cold_bare": True,
        "driver_peak_rss_mb": 512.4,
        "device": "cpu",
        "dtype": "float32",
    }
    assert format_table(figures).splitlines() == [
        "small model, 128 images, batch 16, 1 beam(s), 32 new tokens, cpu float32",
        "mode       images/s",
        "naive          3.50  per image: processor + generate",
        "bare           4.00  batched generate on prepared pixels (the limit)",
        "cold bare      2.90  a fresh script: imports, load, batches",
        "pipeline       3.00  shards -> committed Parquet",
        "pipeline start-up 12.3s (first shard committed), steady 4.10 images/s after it",
        "pipeline start-up steps (s from the start): ray_started 0.0, first_commit 12.3",
        "cold bare start-up 10.5s (first batch generated)",
        "cold bare start-up steps (s from the start): imported 4.0, loaded 5.0, first_batch 10.5",
        "pipeline / bare = 0.75 (steady: 1.03), pipeline / cold bare = 1.03, bare / naive = 1.14",
        "pipeline texts equal bare: True, cold bare: True, driver peak RSS 512 MB",
    ]
