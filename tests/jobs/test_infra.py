"""The deployment files: every manifest has what a cluster needs, its entrypoint runs a
module that exists with flags and a preset that validate, secrets are referenced and
never inlined, and the local stack starts and stops exactly what it started. Nothing here
builds an image or needs a network."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import transformers
import yaml

from jobs.cli import build_parser, load_job_config
from tests.support.raycluster import HOST, cluster_processes

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MANIFESTS = sorted((INFRA / "kuberay").glob("*.yaml"))
EXPECTED_KINDS = {
    "rayjob-ocr.yaml": ("ray.io/v1", "RayJob"),
    "raycronjob-caption.yaml": ("ray.io/v1", "RayCronJob"),
    "raycluster.yaml": ("ray.io/v1", "RayCluster"),
    "cronjob-caption.yaml": ("batch/v1", "CronJob"),
}
SECRET_NAMES = re.compile(r"AWS_|TOKEN|SECRET|PASSWORD|KEY", re.IGNORECASE)
JOB_PRESETS = {
    "jobs.ocr": "ocr",
    "jobs.caption": "caption",
    "jobs.label": "label",
    "jobs.pages": "pages",
}


def _load(path: Path) -> dict:
    (document,) = yaml.safe_load_all(path.read_text())
    return document


def _walk(node, key: str):
    """Every value stored under `key` anywhere in a manifest."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                yield value
            yield from _walk(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)


def _containers(manifest: dict) -> list[dict]:
    return [c for containers in _walk(manifest, "containers") for c in containers]


def _cluster_spec(manifest: dict) -> dict:
    spec = manifest["spec"]
    return {
        "RayJob": lambda: spec["rayClusterSpec"],
        "RayCronJob": lambda: spec["jobTemplate"]["rayClusterSpec"],
        "RayCluster": lambda: spec,
    }[manifest["kind"]]()


def _job_commands(manifest: dict) -> list[list[str]]:
    """The `python -m jobs.X ...` command of each job the manifest runs."""
    commands = [shlex.split(e) for e in _walk(manifest, "entrypoint")]
    for container in _containers(manifest):
        if "--" in container.get("command", []):
            command = container["command"]
            commands.append(command[command.index("--") + 1 :])
    return commands


def test_every_manifest_is_one_of_the_expected_kinds():
    assert {path.name for path in MANIFESTS} == set(EXPECTED_KINDS)
    for path in MANIFESTS:
        manifest = _load(path)
        assert (manifest["apiVersion"], manifest["kind"]) == EXPECTED_KINDS[path.name]
        assert manifest["metadata"]["name"].startswith("shardscribe")


JOB_MANIFESTS = [p for p in MANIFESTS if p.name != "raycluster.yaml"]  # it only hosts jobs


@pytest.mark.parametrize("path", JOB_MANIFESTS, ids=lambda p: p.name)
def test_entrypoints_run_modules_that_exist_with_flags_that_validate(path):
    commands = _job_commands(_load(path))
    assert len(commands) == 1
    for command in commands:
        assert command[:2] == ["python", "-m"], command
        module, flags = command[2], command[3:]
        assert importlib.util.find_spec(module) is not None, module
        config = load_job_config(
            None, build_parser().parse_args(["run", *flags]), JOB_PRESETS[module]
        )
        assert config.input.uri.startswith("s3://") and config.output.uri.startswith("s3://")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_credentials_come_from_secrets_and_token_auth_stays_on(path):
    text = path.read_text()
    assert "disabled" not in text
    assert not re.search(r"AKIA[0-9A-Z]{16}|[0-9a-f]{32}", text), "a key or token is inlined"
    for container in _containers(_load(path)):
        env = {item["name"]: item for item in container.get("env", [])}
        assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "shardscribe-ray-auth"
        for name, item in env.items():
            if SECRET_NAMES.search(name):
                assert "value" not in item, f"{name} is inlined in {container['name']}"


@pytest.mark.parametrize(
    "path", [p for p in MANIFESTS if p.name != "cronjob-caption.yaml"], ids=lambda p: p.name
)
def test_ray_pods_get_s3_credentials_and_gpu_workers(path):
    cluster = _cluster_spec(_load(path))
    assert cluster["rayVersion"] == ray.__version__
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for pod in pods:
        for container in pod["template"]["spec"]["containers"]:
            assert {"secretRef": {"name": "shardscribe-s3"}} in container["envFrom"]
    for group in cluster["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1


@pytest.mark.parametrize(
    "path", [p for p in MANIFESTS if p.name != "cronjob-caption.yaml"], ids=lambda p: p.name
)
def test_gpu_workers_are_autoscaled_down_to_zero(path):
    cluster = _cluster_spec(_load(path))
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] == 0 <= group["replicas"] <= group["maxReplicas"]


@pytest.mark.parametrize("name", ["rayjob-ocr.yaml", "raycronjob-caption.yaml"])
def test_jobs_delete_their_cluster_and_log_plainly(name):
    manifest = _load(INFRA / "kuberay" / name)
    job = manifest["spec"] if manifest["kind"] == "RayJob" else manifest["spec"]["jobTemplate"]
    assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] > 0
    runtime_env = yaml.safe_load(job["runtimeEnvYAML"])
    local = yaml.safe_load((INFRA / "runtime_env.yaml").read_text())
    assert runtime_env["env_vars"] == local["env_vars"]


def test_schedules_are_five_field_cron_expressions():
    for name in ("raycronjob-caption.yaml", "cronjob-caption.yaml"):
        assert len(_load(INFRA / "kuberay" / name)["spec"]["schedule"].split()) == 5


def test_runtime_env_ships_code_only():
    runtime_env = yaml.safe_load((INFRA / "runtime_env.yaml").read_text())
    assert set(runtime_env) == {"excludes", "env_vars"}  # no pip: nothing downloads at start
    assert not any(SECRET_NAMES.search(name) for name in runtime_env["env_vars"])
    assert ".venv/" in runtime_env["excludes"]


def test_dockerfile_runs_as_non_root_with_pinned_dependencies():
    lines = [
        line.strip()
        for line in (INFRA / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0].startswith("ARG BASE=nvidia/cuda:") and lines[1] == "FROM ${BASE}"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert not any(line.startswith("ENTRYPOINT") for line in lines)  # KubeRay sets the command
    assert any("pip install -r infra/constraints.txt" in line for line in lines)
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source


def test_the_image_pins_match_what_the_tests_ran_with():
    pins = dict(
        line.split("==")
        for line in (INFRA / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    assert pins["ray"] == ray.__version__
    assert pins["transformers"] == transformers.__version__
    assert "torch" not in pins  # each image pins its own build of torch


def test_local_stack_starts_and_stops_exactly_what_it_started(tmp_path):
    state = Path("/tmp") / f"sstk-{tmp_path.name[-12:]}"  # Ray needs a short path

    def stack(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "infra.local.stack", *args, "--dir", str(state)]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)

    started = stack("start", "--num-cpus", "1")
    try:
        assert started.returncode == 0, started.stderr
        lines = stack("env").stdout.splitlines()
        exported = dict(line.removeprefix("export ").split("=", 1) for line in lines)
        assert exported["RAY_AUTH_MODE"] == "token" and len(exported["RAY_AUTH_TOKEN"]) == 64
        assert exported["RAY_ADDRESS"].startswith(f"http://{HOST}:")
        assert exported["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert "s3: up" in stack("status").stdout
        assert cluster_processes(state / "ray")
    finally:
        stopped = stack("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not cluster_processes(state / "ray") and not cluster_processes(state / "s3")
    shutil.rmtree(state)
