"""The SeaweedFS test server works, and s3fs finds it from the standard AWS variables alone."""

from __future__ import annotations

import s3fs

from tests.support.s3server import running_s3_server

# Variables that would override or disable AWS_ENDPOINT_URL, or pull in a developer's profile.
_INTERFERING_AWS_VARS = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
)


def test_object_written_by_server_fs_is_read_via_env_only_fs(tmp_path, monkeypatch):
    with running_s3_server(tmp_path / "s3") as server:
        server.make_bucket("roundtrip")
        server.filesystem().pipe("roundtrip/dir/hello.txt", b"hello s3")

        for name in _INTERFERING_AWS_VARS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)

        # No arguments: endpoint, credentials and region must all come from the environment.
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        assert fs.cat("roundtrip/dir/hello.txt") == b"hello s3"
        assert fs.ls("roundtrip/dir") == ["roundtrip/dir/hello.txt"]
