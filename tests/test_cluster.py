"""Jobs submitted to a real `ray start --head` cluster, as the README says: the OCR job
with the `ray job submit` CLI, a caption job with `JobSubmissionClient`, and a job with a
shard that cannot succeed. Inputs and outputs live on the S3 server; the cluster gets its
credentials from its environment, never from the job."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from ray.job_submission import JobStatus, JobSubmissionClient

from tests.data import sample_images, webdataset_members, write_tar
from tests.raycluster import running_ray_cluster
from tests.reference import Reference

REPO = Path(__file__).resolve().parents[1]
RUNTIME_ENV = REPO / "infra" / "runtime_env.yaml"
JOB_TIMEOUT_S = 240
FAST = ["--max-new-tokens", "12", "--batch-size", "4", "--backoff-s", "0.1"]
FAST += ["--log-interval-s", "1", "--actors", "1"]


@pytest.fixture(scope="module")
def cluster(s3):
    with running_ray_cluster(s3.env()) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    return JobSubmissionClient(cluster.dashboard_url, headers=cluster.auth_headers())


def _upload_shards(s3, prefix: str, shards: dict[str, dict[str, bytes]], tmp_path) -> None:
    fs = s3.filesystem()
    for name, images in shards.items():
        path = write_tar(tmp_path / prefix / f"{name}.tar", webdataset_members(images))
        fs.put_file(str(path), f"jobs/{prefix}/{name}.tar")


def _output_rows(s3, prefix: str) -> dict[str, dict]:
    fs = s3.filesystem()
    rows = {}
    for path in sorted(fs.glob(f"jobs/{prefix}/*.parquet")):
        rows |= {r["key"]: r for r in pq.read_table(io.BytesIO(fs.cat_file(path))).to_pylist()}
    return rows


def _wait(client: JobSubmissionClient, job_id: str) -> tuple[JobStatus, str]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not (status := client.get_job_status(job_id)).is_terminal():
        assert time.monotonic() < deadline, client.get_job_logs(job_id)
        time.sleep(1)
    return status, client.get_job_logs(job_id)


@pytest.fixture(scope="module")
def buckets(s3):
    s3.make_bucket("jobs")


def _entrypoint(module: str, model: str, source: str, output: str, *flags: str) -> list[str]:
    return [
        *("python", "-m", module, "--model", model, *FAST, *flags),
        *("--input", f"s3://jobs/{source}", "--output", f"s3://jobs/{output}"),
    ]


def _submit(client: JobSubmissionClient, entrypoint: list[str]) -> str:
    runtime_env = yaml.safe_load(RUNTIME_ENV.read_text()) | {"working_dir": str(REPO)}
    return client.submit_job(entrypoint=" ".join(entrypoint), runtime_env=runtime_env)


def test_ocr_job_submitted_with_the_cli(
    cluster, client, buckets, s3, tiny_model, reference, tmp_path
):
    shards = {"a": sample_images(5), "b": sample_images(3, offset=5)}
    _upload_shards(s3, "ocr-in", shards, tmp_path)
    job_id = f"ocr-{uuid.uuid4().hex[:8]}"
    ray = str(Path(sys.executable).parent / "ray")
    submitted = subprocess.run(
        [
            *(ray, "job", "submit", "--no-wait", "--submission-id", job_id),
            *("--working-dir", ".", "--runtime-env", str(RUNTIME_ENV), "--"),
            *_entrypoint("jobs.ocr", tiny_model, "ocr-in", "ocr-out"),
        ],
        cwd=REPO,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", **cluster.client_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert submitted.returncode == 0, submitted.stderr + submitted.stdout
    status, logs = _wait(client, job_id)

    assert status == JobStatus.SUCCEEDED, logs
    rows = _output_rows(s3, "ocr-out")
    expected = {key: data for images in shards.values() for key, data in images.items()}
    assert set(rows) == set(expected)
    for key, data in expected.items():  # the ocr preset's beam search, 12 new tokens
        assert rows[key]["text"] == reference.text(data, max_new_tokens=12, num_beams=4), key
    assert "progress: 2/2 shards committed" in logs
    assert "done: 2 shards committed, 0 already done, 0 failed; 8 rows" in logs
    assert "\x1b[" not in logs


def test_caption_job_submitted_with_the_python_client(
    client, buckets, s3, tiny_gpt2_model, tmp_path
):
    shards = {"photos-0": sample_images(4, offset=10)}
    _upload_shards(s3, "cap-in", shards, tmp_path)
    entrypoint = _entrypoint(
        "jobs.caption", tiny_gpt2_model, "cap-in", "cap-out", "--num-beams", "1"
    )
    job_id = _submit(client, entrypoint)
    status, logs = _wait(client, job_id)

    assert status == JobStatus.SUCCEEDED, logs
    reference = Reference(tiny_gpt2_model)
    rows = _output_rows(s3, "cap-out")
    assert set(rows) == set(shards["photos-0"])
    for key, data in shards["photos-0"].items():
        assert rows[key]["text"] == reference.text(data, max_new_tokens=12, num_beams=1)


def test_a_job_with_a_shard_that_cannot_succeed_ends_failed_naming_it(
    client, buckets, s3, tiny_model, tmp_path
):
    _upload_shards(s3, "bad-in", {"good": sample_images(3)}, tmp_path)
    whole = (tmp_path / "bad-in" / "good.tar").read_bytes()
    s3.filesystem().pipe_file("jobs/bad-in/truncated.tar", whole[: len(whole) // 2 + 100])
    job_id = _submit(client, _entrypoint("jobs.ocr", tiny_model, "bad-in", "bad-out"))
    status, logs = _wait(client, job_id)

    assert status == JobStatus.FAILED, logs
    assert "failed shard truncated: input:" in logs
    assert "1 shards committed, 0 already done, 1 failed" in logs
    assert set(_output_rows(s3, "bad-out")) == set(sample_images(3))
