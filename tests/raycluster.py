"""A throwaway Ray cluster started with `ray start --head` on loopback, for tests that submit
jobs the way users do (`ray job submit`, `JobSubmissionClient`).

The cluster keeps Ray 2.60's token authentication on, with a token of its own given through
RAY_AUTH_TOKEN (the user's ~/.ray/auth_token is neither read nor written), binds every
port to 127.0.0.1, and keeps all its files in its own temporary directory. `ray stop`
would stop every Ray on the machine, so stopping finds exactly this cluster's processes
(those whose command line names its directory, and all their descendants: raylet workers,
job supervisors, job drivers) and ends them, SIGTERM then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
WORKER_PORTS = 100


@dataclass(frozen=True)
class RayCluster:
    dashboard_url: str  # where jobs are submitted
    temp_dir: Path
    token: str

    def client_env(self) -> dict[str, str]:
        """What a `ray job` CLI client needs: the address and the token."""
        return {
            "RAY_ADDRESS": self.dashboard_url,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
        }

    def auth_headers(self) -> dict[str, str]:
        """For `JobSubmissionClient(headers=...)`, without touching this process's env."""
        return {"Authorization": f"Bearer {self.token}"}


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _free_port_range(size: int) -> int:
    """The first port of `size` consecutive ports that are free right now."""
    for _ in range(50):
        first = secrets.randbelow(20000) + 30000
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first, first + size):
                    sock = stack.enter_context(socket.socket())
                    sock.bind((HOST, port))
            return first
        except OSError:
            continue
    raise RuntimeError(f"no {size} consecutive free ports found")


def _start_command(temp_dir: Path, num_cpus: int) -> tuple[list[str], int]:
    gcs, dashboard, client, node, objects, agent, agent_grpc, runtime_env, metrics = _free_ports(9)
    workers = _free_port_range(WORKER_PORTS)
    ray = str(Path(sys.executable).parent / "ray")
    command = [
        ray, "start", "--head",
        "--node-ip-address", HOST,
        "--port", str(gcs),
        "--dashboard-host", HOST,
        "--dashboard-port", str(dashboard),
        "--ray-client-server-port", str(client),
        "--node-manager-port", str(node),
        "--object-manager-port", str(objects),
        "--dashboard-agent-listen-port", str(agent),
        "--dashboard-agent-grpc-port", str(agent_grpc),
        "--runtime-env-agent-port", str(runtime_env),
        "--metrics-export-port", str(metrics),
        "--min-worker-port", str(workers),
        "--max-worker-port", str(workers + WORKER_PORTS - 1),
        "--num-cpus", str(num_cpus),
        "--temp-dir", str(temp_dir),
        "--disable-usage-stats",
    ]  # fmt: skip
    return command, dashboard


def _wait_for_job_server(cluster: RayCluster, timeout_s: float) -> None:
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            JobSubmissionClient(cluster.dashboard_url, headers=cluster.auth_headers()).list_jobs()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _processes() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, command line)} of every process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # ended while we looked
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        found[int(entry.name)] = (parent, cmdline)
    return found


def cluster_processes(temp_dir: Path) -> set[int]:
    """Processes naming `temp_dir` on their command line, and all their descendants."""
    table = _processes()
    members = {pid for pid, (_, cmdline) in table.items() if str(temp_dir) in cmdline}
    members.discard(os.getpid())
    grew = True
    while grew:
        children = {pid for pid, (parent, _) in table.items() if parent in members}
        grew = not children <= members
        members |= children
    return members


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_cluster(temp_dir: Path, grace_s: float = STOP_GRACE_S) -> None:
    pids = cluster_processes(temp_dir)
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = {pid for pid in pids if Path(f"/proc/{pid}").exists()}
    _signal_all(pids | cluster_processes(temp_dir), signal.SIGKILL)


def start_cluster(temp_dir: Path, env: dict[str, str], num_cpus: int = 2) -> RayCluster:
    """Start a head node keeping its files under `temp_dir` (keep the path short: Ray's
    Unix sockets live under it, and socket paths are capped at 107 bytes). Its processes,
    and so its jobs, run with `env` added, e.g. the S3 server's AWS_* variables, as a pod
    gets them from a Kubernetes Secret."""
    token = secrets.token_hex(32)
    command, dashboard = _start_command(temp_dir, num_cpus)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    start_env = os.environ | env | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    cluster = RayCluster(f"http://{HOST}:{dashboard}", temp_dir, token)
    try:
        subprocess.run(
            command,
            env=start_env | {"PATH": path},
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S,
        )
        _wait_for_job_server(cluster, START_TIMEOUT_S)
    except BaseException:
        stop_cluster(temp_dir)
        raise
    return cluster


@contextlib.contextmanager
def running_ray_cluster(env: dict[str, str], num_cpus: int = 2) -> Iterator[RayCluster]:
    """A head node for the `with` body, stopped and removed however the body exits."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rayc-", dir="/tmp"))
    try:
        yield start_cluster(temp_dir, env, num_cpus)
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
