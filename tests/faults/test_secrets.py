"""Credentials never leak: not in logs, ledger, Parquet, Ray's files or status output."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support.cli import shardscribe
from tests.support.data import sample_images, webdataset_members, write_tar

pytestmark = pytest.mark.faults


def _files_containing(root: Path, secret: bytes) -> list[str]:
    return [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and secret in path.read_bytes()
    ]


def test_secret_from_env_and_config_appears_nowhere(s3, tiny_model, tmp_path):
    secret = s3.secret_access_key.encode()
    fs = s3.filesystem()
    s3.make_bucket("secrets")
    path = write_tar(tmp_path / "a.tar", webdataset_members(sample_images(3)))
    fs.put_file(str(path), "secrets/in/a.tar")
    fs.pipe_file("secrets/in/b.tar", b"not a tar at all")  # a failure, so errors are printed too
    config = tmp_path / "job.yaml"
    config.write_text(
        f"storage:\n  secret_access_key: {s3.secret_access_key}\n"
        f"  access_key_id: {s3.access_key_id}\n  endpoint_url: {s3.endpoint_url}\n"
    )
    ray_dir = Path(tempfile.mkdtemp(prefix="ss-ray-", dir="/tmp"))  # short: socket paths
    env = {**os.environ, **s3.env(), "RAY_TMPDIR": str(ray_dir)}
    try:
        run = shardscribe("run", "--config", str(config), "--input", "s3://secrets/in/",
                          "--output", "s3://secrets/out/", "--model", tiny_model,
                          "--max-new-tokens", "4", "--max-attempts", "1", env=env)  # fmt: skip
        status = shardscribe("status", "s3://secrets/out/", env=env)
        failures = shardscribe("status", "s3://secrets/out/", "--failures", "--json", env=env)
        assert run.returncode == 1, run.stderr[-2000:]
        assert "failed shard b: input: corrupt or truncated tar" in run.stderr
        for result in (run, status, failures):
            assert secret not in (result.stdout + result.stderr).encode()
        written = {p: fs.cat_file(p) for p in fs.find("secrets/out/")}
        assert any(p.endswith("run.json") for p in written) and len(written) >= 3
        assert [p for p, data in written.items() if secret in data] == []
        assert any(ray_dir.rglob("*.log")), "Ray should have logged under RAY_TMPDIR"
        assert _files_containing(ray_dir, secret) == []
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
