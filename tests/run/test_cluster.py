"""Jobs submitted to a real `ray start --head` cluster, as docs/clusters.md says: the OCR job
with the `ray job submit` CLI, a caption job with `JobSubmissionClient`, and a job with a
shard that cannot succeed. Inputs and outputs live on the S3 server; the cluster gets its
credentials from its environment, never from the job."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pypdfium2 as pdfium
import pytest
import yaml
from ray.job_submission import JobStatus, JobSubmissionClient

from pipeline.inputs.segmentation import segment_lines
from tests.support.cli import shardscribe
from tests.support.data import sample_images, webdataset_members, write_pdf, write_tar
from tests.support.raycluster import running_ray_cluster
from tests.support.reference import Reference

REPO = Path(__file__).resolve().parents[2]
RUNTIME_ENV = "infra/runtime_env.yaml"
BIN = Path(sys.executable).parent
JOB_TIMEOUT_S = 240
FAST = ["--max-new-tokens", "12", "--batch-size", "4", "--backoff-s", "0.1"]
FAST += ["--log-interval-s", "1", "--actors", "1"]
PROGRESS_LINE = re.compile(
    r"progress: [0-2]/2 shards committed, 0 failed, \d+ images, \d+\.\d+ images/s, "
    r"elapsed \d+m\d\ds, eta (\d+m\d\ds|\?)\n"
)


@pytest.fixture(scope="module")
def cluster(s3):
    with running_ray_cluster(s3.env()) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    return JobSubmissionClient(cluster.dashboard_url, headers=cluster.auth_headers())


@pytest.fixture(scope="module")
def bucket(s3):
    s3.make_bucket("jobs")


def _ray_job(cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """The `ray job` CLI with what a client machine has: the address and the token, no
    credentials for S3 and no ~/.ray."""
    return subprocess.run(
        [str(BIN / "ray"), "job", *args],
        cwd=REPO,
        env={"PATH": f"{BIN}:/usr/bin:/bin", **cluster.client_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _logs(cluster, job_id: str) -> str:
    # Ray's CLI colours its own messages even into a pipe unless told not to.
    result = _ray_job(cluster, "logs", "--log-color", "false", job_id)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _wait(client: JobSubmissionClient, job_id: str) -> JobStatus:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not (status := client.get_job_status(job_id)).is_terminal():
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            pytest.fail(
                f"job {job_id} still {status} after {JOB_TIMEOUT_S}s; its logs:\n"
                f"{client.get_job_logs(job_id)}"
            )
        time.sleep(1)
    return status


def _upload_shards(s3, prefix: str, shards: dict[str, dict[str, bytes]], tmp_path) -> None:
    fs = s3.filesystem()
    for name, images in shards.items():
        path = write_tar(tmp_path / prefix / f"{name}.tar", webdataset_members(images))
        fs.put_file(str(path), f"jobs/{prefix}/{name}.tar")


def _output(s3, prefix: str) -> dict[str, list[dict]]:
    """{file name: rows} of the Parquet files under `prefix`."""
    fs = s3.filesystem()
    return {
        Path(path).name: pq.read_table(io.BytesIO(fs.cat_file(path))).to_pylist()
        for path in sorted(fs.glob(f"jobs/{prefix}/*.parquet"))
    }


def _entrypoint(module: str, model: str, source: str, output: str, *flags: str) -> list[str]:
    return [
        *("python", "-m", module, "--model", model, *FAST, *flags),
        *("--input", f"s3://jobs/{source}/", "--output", f"s3://jobs/{output}/"),
    ]


def _submit(client: JobSubmissionClient, entrypoint: list[str]) -> str:
    """As `ray job submit --working-dir . --runtime-env infra/runtime_env.yaml` does."""
    runtime_env = yaml.safe_load((REPO / RUNTIME_ENV).read_text()) | {"working_dir": str(REPO)}
    return client.submit_job(entrypoint=shlex.join(entrypoint), runtime_env=runtime_env)


def _expected_rows(shard: str, images: dict[str, bytes], reference: Reference, **kwargs):
    return [
        {"shard": shard, "key": key, "text": reference.text(data, **kwargs), "error": None}
        for key, data in images.items()
    ]


def _result_columns(rows: list[dict]) -> list[dict]:
    return [{k: row[k] for k in ("shard", "key", "text", "error")} for row in rows]


def test_the_cluster_refuses_requests_without_its_token(cluster):
    for headers, code in (({}, 401), ({"Authorization": "Bearer not-the-token"}, 403)):
        request = urllib.request.Request(f"{cluster.dashboard_url}/api/jobs/", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == code


def test_ocr_job_submitted_with_the_cli(
    cluster, client, bucket, s3, tiny_model, reference, tmp_path
):
    shards = {"a": sample_images(5), "b": sample_images(3, offset=5)}
    _upload_shards(s3, "ocr-in", shards, tmp_path)
    job_id = f"ocr-{uuid.uuid4().hex[:8]}"
    submitted = _ray_job(
        cluster,
        *("submit", "--no-wait", "--submission-id", job_id),
        *("--working-dir", ".", "--runtime-env", RUNTIME_ENV, "--"),
        *_entrypoint("jobs.ocr", tiny_model, "ocr-in", "ocr-out"),
    )
    assert submitted.returncode == 0, submitted.stderr + submitted.stdout
    status = _wait(client, job_id)
    logs = _logs(cluster, job_id)

    assert status == JobStatus.SUCCEEDED, logs
    # The ocr preset's beam search, with the 12 new tokens of FAST.
    assert {name: _result_columns(rows) for name, rows in _output(s3, "ocr-out").items()} == {
        f"{shard}.parquet": _expected_rows(shard, images, reference, max_new_tokens=12, num_beams=4)
        for shard, images in shards.items()
    }
    progress = PROGRESS_LINE.search(logs)
    done = logs.find("done: 2 shards committed, 0 already done, 0 failed; 8 rows, 0 row errors;")
    assert progress and progress.end() <= done, logs
    assert "\x1b[" not in logs
    assert s3.secret_access_key not in logs


def test_caption_job_submitted_with_the_python_client(
    client, bucket, s3, tiny_gpt2_model, tmp_path
):
    images = sample_images(4, offset=10)
    _upload_shards(s3, "cap-in", {"photos-0": images}, tmp_path)
    entrypoint = _entrypoint("jobs.caption", tiny_gpt2_model, "cap-in", "cap-out")
    job_id = _submit(client, entrypoint)
    status = _wait(client, job_id)
    logs = client.get_job_logs(job_id)

    assert status == JobStatus.SUCCEEDED, logs
    # The caption preset's beam search; the credentials came from the cluster, not the job.
    reference = Reference(tiny_gpt2_model)
    assert {name: _result_columns(rows) for name, rows in _output(s3, "cap-out").items()} == {
        "photos-0.parquet": _expected_rows(
            "photos-0", images, reference, max_new_tokens=12, num_beams=4
        )
    }
    assert "done: 1 shards committed, 0 already done, 0 failed; 4 rows, 0 row errors;" in logs
    assert not [
        name for name in client.get_job_info(job_id).runtime_env["env_vars"] if "AWS" in name
    ]


def test_pages_job_reads_pdfs_from_s3_a_row_per_page(client, bucket, s3, tiny_model, tmp_path):
    """`python -m jobs.pages` (the pages preset: lines found, then read) on a PDF in S3."""
    pdf = write_pdf(tmp_path / "report.pdf", ["Quarterly report\nRevenue up 4%", "Signed"])
    s3.filesystem().put_file(str(pdf), "jobs/pdf-in/2026/report.pdf")
    entrypoint = _entrypoint(
        "jobs.pages",
        tiny_model,
        "pdf-in",
        "pdf-out",
        "--pdf-dpi",
        "72",
        "--pdf-text-layer",
        "ignore",
    )
    job_id = _submit(client, entrypoint)
    status = _wait(client, job_id)
    logs = client.get_job_logs(job_id)

    assert status == JobStatus.SUCCEEDED, logs
    output = s3.filesystem().cat_file("jobs/pdf-out/2026/report.parquet")
    rows = pq.read_table(io.BytesIO(output)).to_pylist()
    assert [(row["key"], row["page"], len(row["lines"])) for row in rows] == [
        ("page-0001", 1, 2),
        ("page-0002", 2, 1),
    ]
    reference = Reference(tiny_model)
    document = pdfium.PdfDocument(str(pdf))
    for row in rows:
        page = document[row["page"] - 1].render(scale=1, grayscale=True).to_pil()
        lines = segment_lines(page.convert("RGB"))
        crops = [io.BytesIO() for _ in lines]
        for crop, line in zip(crops, lines, strict=True):
            line.crop.save(crop, "PNG")
        expected = [reference.text(crop.getvalue(), max_new_tokens=12) for crop in crops]
        assert row["text"] == "\n".join(expected) and row["error"] is None
    assert "done: 1 shards committed, 0 already done, 0 failed; 2 rows, 0 row errors;" in logs


def test_a_job_with_a_shard_that_cannot_succeed_ends_failed_naming_it(
    cluster, client, bucket, s3, tiny_model, reference, tmp_path
):
    images = sample_images(3)
    _upload_shards(s3, "bad-in", {"good": images}, tmp_path)
    whole = (tmp_path / "bad-in" / "good.tar").read_bytes()
    s3.filesystem().pipe_file("jobs/bad-in/truncated.tar", whole[:1200])
    entrypoint = _entrypoint("jobs.ocr", tiny_model, "bad-in", "bad-out")
    job_id = _submit(client, entrypoint)
    status = _wait(client, job_id)
    logs = _logs(cluster, job_id)

    assert status == JobStatus.FAILED, logs
    error = "input: corrupt or truncated tar: ReadError: unexpected end of data"
    assert f"failed shard truncated: {error}\n" in logs
    assert "done: 1 shards committed, 0 already done, 1 failed; 3 rows, 0 row errors;" in logs
    assert {name: _result_columns(rows) for name, rows in _output(s3, "bad-out").items()} == {
        "good.parquet": _expected_rows("good", images, reference, max_new_tokens=12, num_beams=4)
    }
    status = shardscribe("status", "s3://jobs/bad-out/", "--json", env=os.environ | s3.env())
    assert json.loads(status.stdout)["failed"] == [
        {"shard": "truncated", "error_class": "input", "error": error, "attempts": 1}
    ]


def test_ray_job_stop_commits_the_shards_in_flight_and_a_resubmit_completes(
    cluster, client, bucket, s3, tiny_model, reference, tmp_path
):
    """`ray job stop` (SIGTERM, then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S, which
    infra/runtime_env.yaml raises to 30 s): the job ends STOPPED saying how far it got,
    what it committed is whole and right, and submitting it again completes the rest."""
    shards = {f"s{i:02d}": sample_images(4, offset=4 * i) for i in range(16)}
    _upload_shards(s3, "stop-in", shards, tmp_path)
    entrypoint = _entrypoint("jobs.ocr", tiny_model, "stop-in", "stop-out")
    job_id = _submit(client, entrypoint)
    fs, deadline = s3.filesystem(), time.monotonic() + JOB_TIMEOUT_S
    while not fs.glob("jobs/stop-out/*.parquet") and time.monotonic() < deadline:
        time.sleep(0.2)
        fs.invalidate_cache()
    stopped = _ray_job(cluster, "stop", job_id)
    assert stopped.returncode == 0, stopped.stderr
    assert _wait(client, job_id) == JobStatus.STOPPED
    logs = client.get_job_logs(job_id)
    interrupted = re.search(r"interrupted: (\d+) of 16 shards committed; rerun the same", logs)
    assert interrupted, logs
    committed = _output(s3, "stop-out")
    assert len(committed) == int(interrupted.group(1)) < 16
    expected = {
        f"{shard}.parquet": _expected_rows(shard, images, reference, max_new_tokens=12, num_beams=4)
        for shard, images in shards.items()
    }
    assert {name: _result_columns(rows) for name, rows in committed.items()} == {
        name: expected[name] for name in committed
    }

    again = _submit(client, entrypoint)
    assert _wait(client, again) == JobStatus.SUCCEEDED, client.get_job_logs(again)
    assert {name: _result_columns(rows) for name, rows in _output(s3, "stop-out").items()} == (
        expected
    )
