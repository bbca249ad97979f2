"""The same pipeline against a real S3 server on loopback: every format in and out of S3."""

from __future__ import annotations

import io
import json
import os

import pyarrow.parquet as pq
import pytest

from pipeline.inputs.readers import read_source_rows
from pipeline.inputs.shards import discover_shards
from pipeline.job_config import InputSettings, StorageSettings
from pipeline.output.lease import OutputLease
from pipeline.output.status import output_status
from pipeline.run.runner import run_job
from pipeline.storage import open_filesystem
from tests.conftest import job_config
from tests.support.cli import shardscribe
from tests.support.data import (
    sample_images,
    webdataset_members,
    write_parquet,
    write_pdf,
    write_tar,
)
from tests.support.flaky_proxy import flaky_proxy


@pytest.fixture(scope="module")
def bucket(s3, tmp_path_factory):
    """Shards of every format, written with s3fs, tarfile and pyarrow directly."""
    staging = tmp_path_factory.mktemp("upload")
    fs = s3.filesystem()
    s3.make_bucket("data")
    images = sample_images(6)
    for name, writer, part in (
        ("wds/a.tar", lambda p, imgs: write_tar(p, webdataset_members(imgs)), slice(0, 4)),
        ("wds/b.tar", lambda p, imgs: write_tar(p, webdataset_members(imgs)), slice(4, 6)),
        ("pq/x.parquet", write_parquet, slice(0, 6)),
    ):
        keys = list(images)[part]
        path = writer(staging / name, {k: images[k] for k in keys})
        fs.put_file(str(path), f"data/{name}")
    for key in list(images)[:3]:
        fs.pipe_file(f"data/img/{key}.png", images[key])
    fs.pipe_file("data/img/corrupt.png", b"\x89PNG\r\n\x1a\n truncated")
    return s3, images


def _storage(server) -> dict:
    return {
        "endpoint_url": server.endpoint_url,
        "access_key_id": server.access_key_id,
        "secret_access_key": server.secret_access_key,
        "region": server.region,
    }


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize(
    ("prefix", "extra", "expected_files"),
    [
        ("wds", {}, {"a": 4, "b": 2}),
        ("pq", {"key_column": "id"}, {"x": 6}),
        ("img", {"images_per_shard": 10}, {"part-00000": 4}),
    ],
)
def test_every_format_from_s3_to_s3(bucket, tiny_model, reference, prefix, extra, expected_files):
    server, images = bucket
    config = job_config(
        f"s3://data/{prefix}/",
        f"s3://data/out-{prefix}/",
        tiny_model,
        input=extra,
        storage=_storage(server),
    )
    summary = run_job(config)
    assert (summary.exit_code, summary.shards_committed) == (0, len(expected_files))
    fs = server.filesystem()
    for shard, count in expected_files.items():
        table = pq.read_table(io.BytesIO(fs.cat_file(f"data/out-{prefix}/{shard}.parquet")))
        assert table.num_rows == count
        for row in table.to_pylist():
            key = row["key"].removesuffix(".png")
            if key == "corrupt":
                assert row["error"].startswith("decode: cannot decode image")
                continue
            assert row["text"] == reference.text(images[key], max_new_tokens=12), key
    status = output_status(f"s3://data/out-{prefix}/", config.storage)
    assert (status["shards_done"], status["shards_failed"]) == (len(expected_files), 0)
    assert status["rows"] == sum(expected_files.values())
    assert not any(p.endswith(".tmp") for p in fs.find(f"data/out-{prefix}/"))


def test_cli_with_aws_variables_only_then_rerun(bucket, tiny_model):
    server, _ = bucket
    env = {**os.environ, **server.env()}
    args = (
        "run",
        "--input",
        "s3://data/wds/",
        "--output",
        "s3://data/cli-out/",
        "--model",
        tiny_model,
        "--max-new-tokens",
        "6",
    )
    first = shardscribe(*args, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert server.secret_access_key not in first.stderr + first.stdout
    status = json.loads(shardscribe("status", "s3://data/cli-out/", "--json", env=env).stdout)
    assert (status["shards_total"], status["shards_done"], status["rows"]) == (2, 2, 6)
    again = shardscribe(*args, env=env)
    assert again.returncode == 0
    assert "0 shards committed, 2 already done, 0 failed; 0 rows" in again.stderr


def test_missing_bucket_exits_2(bucket, tiny_model):
    server, _ = bucket
    env = {**os.environ, **server.env()}
    result = shardscribe(
        "run",
        "--input",
        "s3://no-such-bucket/x/",
        "--output",
        "s3://data/never/",
        "--model",
        tiny_model,
        env=env,
    )
    assert result.returncode == 2
    assert "input s3://no-such-bucket/x/ does not exist or is empty" in result.stderr


def _env(tmp_path, **aws) -> dict[str, str]:
    """The environment with only the given AWS variables (and no ~/.aws to fall back on)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return env | {"HOME": str(tmp_path), **aws}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no credentials", "no credentials for s3://data/wds: set AWS_ACCESS_KEY_ID and "),
        ("wrong keys", "access to s3://data/wds denied ("),
        ("unreachable endpoint", "cannot reach the object store of s3://data/wds ("),
    ],
)
def test_storage_access_problems_are_one_line_and_exit_2(
    bucket, tiny_model, tmp_path, case, expected
):
    """run, status and preview alike: no traceback, exit 2, the URL and what to set."""
    server, _ = bucket
    aws = {"AWS_ENDPOINT_URL": server.endpoint_url}
    if case == "wrong keys":
        aws |= {"AWS_ACCESS_KEY_ID": "nobody", "AWS_SECRET_ACCESS_KEY": "wrong"}
    if case == "unreachable endpoint":
        aws = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x"}
        aws |= {"AWS_SECRET_ACCESS_KEY": "y"}
    commands = [
        ["run", "--input", "s3://data/wds", "--output", str(tmp_path / "o"), "--model", tiny_model],
        ["status", "s3://data/wds"],
        ["preview", "s3://data/wds", "--out", str(tmp_path / "p")],
    ]
    for command in commands:
        result = shardscribe(*command, env=_env(tmp_path, **aws), timeout=120)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
        assert expected in result.stderr.splitlines()[-1], (command, result.stderr[-2000:])


def test_a_small_shard_is_one_get_and_a_commit_check_one_more(bucket, tmp_path):
    """On S3 each request is paid for: a one-document shard reads in one GET (no HEAD for
    its size, which the listing gave), and the lease check before each commit is one GET."""
    server, _ = bucket
    pdf_bytes = write_pdf(tmp_path / "doc.pdf", ["A page"]).read_bytes()
    server.filesystem().pipe_file("data/one-pdf/doc.pdf", pdf_bytes)
    with flaky_proxy(server.endpoint_url, fault_rate=0.0) as proxy:
        storage = StorageSettings(**_storage(server) | {"endpoint_url": proxy.endpoint_url})
        fs, _ = open_filesystem("s3://data", storage)

        def requests(action, *args):
            """What `action(*args)` returned, and the requests it made by method."""
            before = dict(proxy.stats.methods)
            result = action(*args)
            made = {method: n - before.get(method, 0) for method, n in proxy.stats.methods.items()}
            return result, {method: n for method, n in made.items() if n}

        for prefix, rows in (("wds", 4), ("one-pdf", 1)):
            settings = InputSettings(uri=f"s3://data/{prefix}")
            shard = discover_shards(fs, f"data/{prefix}", settings)[0]
            fs.invalidate_cache()  # a read task's process has not listed anything
            read, made = requests(read_source_rows, fs, shard, settings)
            assert (len(read.keys), made) == (rows, {"GET": 1})
            read.close()
        lease = OutputLease(fs, "data/leased", ttl_s=60)
        lease.acquire()
        try:
            assert requests(lease.check) == (None, {"GET": 1})
        finally:
            lease.release()
