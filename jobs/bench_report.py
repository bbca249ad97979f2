"""What `shardscribe bench` prints: the uniform workload's table, the mixed workload's
(static against continuous batching), or either result as one JSON object."""

from __future__ import annotations

import json
from typing import Any

from jobs.bench_mixed import MAX_CHARS, MODES


def print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    elif result.get("workload") == "mixed":
        print(format_mixed(result))
    else:
        print(format_table(result))


def format_table(result: dict[str, Any]) -> str:
    rows = [
        ("naive", result["naive_ips"], "per image: processor + generate"),
        ("bare", result["bare_ips"], "batched generate on prepared pixels (the limit)"),
        ("cold bare", result["cold_bare_ips"], "a fresh script: imports, load, batches"),
        ("pipeline", result["pipeline_ips"], "shards -> committed Parquet"),
    ]
    lines = [
        f"{result['model']} model, {result['images']} images, batch {result['batch_size']}, "
        f"{result['num_beams']} beam(s), {result['max_new_tokens']} new tokens, "
        f"{result['device']} {result['dtype']}",
        f"{'mode':9} {'images/s':>9}",
        *(f"{name:9} {ips:>9.2f}  {what}" for name, ips, what in rows),
        f"pipeline start-up {result['pipeline_startup_s']:.1f}s (first shard committed), "
        f"steady {result['pipeline_steady_ips'] or 0:.2f} images/s after it",
        _steps("pipeline", result["pipeline_startup_steps_s"]),
        f"cold bare start-up {result['cold_bare_startup_s']:.1f}s (first batch generated)",
        _steps("cold bare", result["cold_bare_startup_steps_s"]),
        f"pipeline / bare = {result['pipeline_vs_bare']:.2f} "
        f"(steady: {result['pipeline_steady_vs_bare'] or 0:.2f}), "
        f"pipeline / cold bare = {result['pipeline_vs_cold_bare']:.2f}, "
        f"bare / naive = {result['bare_vs_naive']:.2f}",
        f"pipeline texts equal bare: {result['pipeline_equals_bare']}, "
        f"cold bare: {result['pipeline_equals_cold_bare']}, "
        f"driver peak RSS {result['driver_peak_rss_mb']:.0f} MB",
    ]
    return "\n".join(lines)


def _steps(mode: str, steps: dict[str, float]) -> str:
    return f"{mode} start-up steps (s from the start): " + ", ".join(
        f"{step} {s:.1f}" for step, s in steps.items()
    )


def format_mixed(result: dict[str, Any]) -> str:
    columns = ("ips", "occupancy", "rows_per_step", "rows_per_encoder_call")
    lines = [
        f"mixed lines of 1-{MAX_CHARS} characters, {result['images']} images in shards of "
        f"{' and '.join(map(str, result['shard_sizes']))}, batch {result['batch_size']}, "
        f"model {result['model']}",
        f"{'batching':11}" + "".join(f"{name:>23}" for name in columns),
    ]
    for mode in MODES:
        lines.append(f"{mode:11}" + "".join(f"{result[mode][c] or 0:>23}" for c in columns))
    lines.append(
        f"continuous / static = {result['continuous_vs_static']:.2f}, texts equal: "
        f"{result['texts_equal']}, pixel bytes per image: "
        f"{result['continuous']['pixel_bytes_per_image']:.0f}"
    )
    return "\n".join(lines)
