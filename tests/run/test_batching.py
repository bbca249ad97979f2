"""Batch size auto: the arithmetic, and that outputs do not depend on it."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from model.batching import CPU_BATCH_SIZE, MAX_BATCH_SIZE, auto_batch_size, batch_size_for
from pipeline.run.runner import run_job
from tests.conftest import job_config
from tests.support.data import sample_images, webdataset_members, write_tar

GB, MB = 1024**3, 1024**2


def test_batch_size_fits_the_headroom_of_free_memory():
    assert batch_size_for(10 * GB, 100 * MB) == 71  # 70 % of 10 GiB / 100 MiB
    assert batch_size_for(80 * GB, 1 * MB) == MAX_BATCH_SIZE
    assert batch_size_for(1 * GB, 4 * GB) == 1  # one image always runs


def test_auto_on_cpu_is_the_measured_best():
    assert auto_batch_size(torch.device("cpu"), lambda: None) == CPU_BATCH_SIZE


@pytest.mark.usefixtures("ray_cluster")
def test_auto_batch_size_gives_the_same_rows(tiny_model, reference, tmp_path):
    images = sample_images(21)
    write_tar(tmp_path / "in" / "a.tar", webdataset_members(images))
    auto = {"batch_size": "auto"}
    config = job_config(tmp_path / "in", tmp_path / "out", tiny_model, compute=auto)
    assert run_job(config).rows == 21
    rows = pq.read_table(tmp_path / "out" / "a.parquet").to_pylist()
    assert [row["key"] for row in rows] == list(images)
    for row in rows:
        assert row["text"] == reference.text(images[row["key"]], max_new_tokens=12)
