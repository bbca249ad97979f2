"""A generation actor SIGKILLed mid-run: Ray restarts it, the job completes, exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest

from pipeline.run.runner import run_job
from tests.conftest import job_config
from tests.support.data import sample_images, webdataset_members, write_tar

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("ray_cluster")]
SHARDS, PER_SHARD = 6, 6
GENERATION = {"num_beams": 4, "max_new_tokens": 24}


def _generation_actor_pids() -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", r"ray::MapWorker\(MapBatches\(GenerationStage"],
        capture_output=True,
        text=True,
    )
    return [int(pid) for pid in found.stdout.split()]


def test_killed_generation_actor_is_restarted_and_rows_stay_exactly_once(
    tmp_path, tiny_model, reference
):
    images = {}
    for shard in range(SHARDS):
        batch = sample_images(PER_SHARD, offset=shard * PER_SHARD)
        write_tar(tmp_path / "in" / f"{shard:02d}.tar", webdataset_members(batch))
        images |= batch
    config = job_config(
        tmp_path / "in",
        tmp_path / "out",
        tiny_model,
        generation=GENERATION,
        compute={"batch_size": 1},
    )
    result = {}
    runner = threading.Thread(target=lambda: result.update(summary=run_job(config)))
    runner.start()
    killed, committed_at_kill = [], None
    deadline = time.monotonic() + 240
    while runner.is_alive() and not killed and time.monotonic() < deadline:
        committed = list((tmp_path / "out").glob("*.parquet"))
        if committed and (pids := _generation_actor_pids()):
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed, committed_at_kill = pids, len(committed)
        time.sleep(0.05)
    runner.join(timeout=300)
    assert killed, "the run ended before an actor could be killed"
    assert committed_at_kill < SHARDS
    summary = result["summary"]
    assert (summary.exit_code, summary.shards_committed, summary.rows) == (0, SHARDS, len(images))
    rows = [
        row
        for path in sorted((tmp_path / "out").glob("*.parquet"))
        for row in pq.read_table(path).to_pylist()
    ]
    assert Counter(row["key"] for row in rows) == Counter(list(images))
    for row in rows:
        assert row["text"] == reference.text(images[row["key"]], **GENERATION), row["key"]
