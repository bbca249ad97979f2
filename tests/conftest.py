from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray

from model import build_tiny_model
from pipeline.config_loading import validate_config
from pipeline.job_config import JobConfig
from tests.support.reference import Reference


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A tiny ViT + TrOCR checkpoint, saved and loaded through the real HF code."""
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-trocr"))


@pytest.fixture(scope="session")
def tiny_gpt2_model(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-gpt2", "gpt2"))


@pytest.fixture(scope="session")
def reference(tiny_model) -> Reference:
    return Reference(tiny_model)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the session, as `shardscribe run` would start it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A real S3 server (SeaweedFS) on loopback."""
    from tests.support.s3server import running_s3_server

    with running_s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


def job_config(
    input_uri: str | Path, output_uri: str | Path, model_path: str, **sections: Any
) -> JobConfig:
    """A test job: small batches, quick retries; `sections` override per section."""
    data: dict[str, Any] = {
        "input": {"uri": str(input_uri)},
        "output": {"uri": str(output_uri)},
        "model": {"name": model_path},
        "generation": {"max_new_tokens": 12},
        "compute": {"batch_size": 4, "actors": 1},
        "retry": {"backoff_s": 0.1},
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return validate_config(data)
