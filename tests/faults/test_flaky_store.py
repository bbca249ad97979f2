"""A flaky and a hanging object store between the pipeline and S3."""

from __future__ import annotations

import io
import threading

import pyarrow.parquet as pq
import pytest

from pipeline.run.runner import run_job
from tests.conftest import job_config
from tests.support.data import sample_images, webdataset_members, write_tar
from tests.support.flaky_proxy import flaky_proxy

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("ray_cluster")]


@pytest.fixture(scope="module")
def shards(s3, tmp_path_factory):
    """Four WebDataset shards in bucket `flaky`, and every image by key."""
    s3.make_bucket("flaky")
    fs, images = s3.filesystem(), {}
    staging = tmp_path_factory.mktemp("flaky")
    for shard in range(4):
        batch = sample_images(3, offset=3 * shard)
        fs.put_file(
            str(write_tar(staging / f"{shard}.tar", webdataset_members(batch))),
            f"flaky/in/{shard}.tar",
        )
        images |= batch
    return images


def _storage(s3, endpoint: str, **extra) -> dict:
    return {
        "endpoint_url": endpoint,
        "access_key_id": s3.access_key_id,
        "secret_access_key": s3.secret_access_key,
        "region": s3.region,
        **extra,
    }


def _run_through(proxy, s3, tiny_model, output: str, **sections):
    """Run the job on bucket `flaky` through `proxy`, output under `flaky/<output>/`."""
    storage = _storage(s3, proxy.endpoint_url, **sections.pop("storage", {}))
    config = job_config(
        "s3://flaky/in/", f"s3://flaky/{output}/", tiny_model, storage=storage, **sections
    )
    return run_job(config)


def _output_rows(s3, prefix: str) -> list[dict]:
    fs = s3.filesystem()
    return [
        row
        for path in sorted(fs.glob(f"{prefix}/*.parquet"))
        for row in pq.read_table(io.BytesIO(fs.cat_file(path))).to_pylist()
    ]


def test_ten_percent_faults_still_give_the_clean_output(s3, shards, tiny_model, reference):
    with flaky_proxy(s3.endpoint_url, fault_rate=0.1, seed=7, delay_s=2.0) as proxy:
        summary = _run_through(
            proxy,
            s3,
            tiny_model,
            "out",
            storage={"read_timeout_s": 1},
            retry={"max_attempts": 5},
        )
    injected = proxy.stats.injected
    assert sum(injected.values()) >= 3, proxy.stats.snapshot()
    assert (summary.exit_code, summary.shards_committed, summary.failed) == (0, 4, {})
    rows = _output_rows(s3, "flaky/out")
    assert sorted(row["key"] for row in rows) == sorted(shards)
    for row in rows:
        assert row["text"] == reference.text(shards[row["key"]], max_new_tokens=12)


def test_a_hanging_store_cannot_stall_the_run(s3, shards, tiny_model):
    # Every request for shard 2 hangs far longer than the no-progress timeout.
    with flaky_proxy(
        s3.endpoint_url, fault_rate=1.0, modes=("delay",), delay_s=300, path_filter="in/2.tar"
    ) as proxy:
        # The timeout must outlast starting the actor pool (a few seconds here).
        retry = {"max_attempts": 2, "shard_timeout_s": 30}
        summary = _run_through(proxy, s3, tiny_model, "hung", retry=retry)
    assert summary.exit_code == 1 and summary.shards_committed == 3
    assert list(summary.failed) == ["2"]
    assert summary.failed["2"].startswith("timeout: no progress for 30s")
    assert summary.retries == {"timeout": 1}
    assert summary.seconds < 150


def test_a_refused_shard_fails_at_once_naming_its_key(s3, shards, tiny_model):
    """403 AccessDenied for one object (a bucket policy that leaves it out): that shard
    fails on its first attempt with class storage and its key; the others commit."""
    with flaky_proxy(
        s3.endpoint_url, fault_rate=1.0, modes=("403",), path_filter="in/1.tar"
    ) as proxy:
        summary = _run_through(proxy, s3, tiny_model, "refused", retry={"max_attempts": 3})
    assert proxy.stats.injected["403"] >= 1
    assert (summary.exit_code, summary.shards_committed, list(summary.failed)) == (1, 3, ["1"])
    assert summary.failed["1"].startswith("storage: ")
    assert "flaky/in/1.tar" in summary.failed["1"]
    assert summary.retries == {}  # refused is not transient: no retry


def test_sustained_throttling_is_waited_out(s3, shards, tiny_model, reference):
    """Every read answered 503 SlowDown for 8 s: the run backs off and completes exactly,
    no shard failed."""
    with flaky_proxy(s3.endpoint_url, fault_rate=1.0, modes=("503",), path_filter="in/") as proxy:
        threading.Timer(8.0, proxy.set_fault_rate, args=(0.0,)).start()
        summary = _run_through(proxy, s3, tiny_model, "throttled")
    assert proxy.stats.injected["503"] >= 4, proxy.stats.snapshot()  # botocore backs off
    assert (summary.exit_code, summary.shards_committed, summary.failed) == (0, 4, {})
    rows = _output_rows(s3, "flaky/throttled")
    assert sorted(row["key"] for row in rows) == sorted(shards)
    for row in rows:
        assert row["text"] == reference.text(shards[row["key"]], max_new_tokens=12)
