"""A throwaway Ray cluster started with `ray start --head` on loopback, for tests that submit
jobs the way users do (`ray job submit`, `JobSubmissionClient`).

The cluster keeps Ray 2.60's token authentication on, with a token of its own given through
RAY_AUTH_TOKEN (the user's ~/.ray/auth_token is neither read nor written), listens on
loopback only, and keeps all its files in its own temporary directory. `ray stop` would
stop every Ray on the machine, so stopping finds exactly this cluster's processes (those
naming its directory on their command line or working in it, and all their descendants:
raylet workers, job supervisors, job drivers) and ends them, SIGTERM then SIGKILL.
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

from tests.support.processes import ProcessInfo, all_processes, with_descendants

# A loopback address other than 127.0.0.1: Ray rewrites "127.0.0.1" and "localhost" into
# the machine's network address whenever more than one node may join, and the cluster
# would then listen there; any 127.x address stays on loopback and is left as it is.
HOST = "127.0.0.2"
START_TIMEOUT_S = 120.0
# The GCS server hangs on SIGTERM flushing its event recorder, and test clusters hold
# nothing worth a graceful stop, so the grace before SIGKILL is short.
STOP_GRACE_S = 3.0
KILL_TIMEOUT_S = 10.0
WORKER_PORTS = 100


class RayClusterError(RuntimeError):
    """`ray start` failed, the job server never answered, or a process outlived SIGKILL."""


@dataclass(frozen=True)
class RayCluster:
    dashboard_url: str  # where jobs are submitted
    gcs_address: str  # what drivers and worker nodes join
    temp_dir: Path
    token: str
    env: dict[str, str]  # of every process of the cluster

    def client_env(self) -> dict[str, str]:
        """What a `ray job` CLI client needs: the address and the token."""
        return {
            "RAY_ADDRESS": self.dashboard_url,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
        }

    def auth_headers(self) -> dict[str, str]:
        """For `JobSubmissionClient(headers=...)`. Not the process env: Ray caches the
        token it first loads, so a later RAY_AUTH_TOKEN would be ignored in a process that
        already ran `ray.init()` (as the rest of the test session does)."""
        return {"Authorization": f"Bearer {self.token}"}


def _free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:  # all held open, so no port comes twice
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


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
    raise RayClusterError(f"no {size} consecutive free ports found")


def _ports(count: int) -> tuple[list[int], int]:
    """`count` free ports, and the first of WORKER_PORTS consecutive free ones, with no
    port in both (Ray refuses a node whose components share one)."""
    workers = _free_port_range(WORKER_PORTS)
    for _ in range(50):
        ports = _free_ports(count)
        if not any(workers <= port < workers + WORKER_PORTS for port in ports):
            return ports, workers
    raise RayClusterError("no free ports outside the worker port range")


def _node_command(
    temp_dir: Path, num_cpus: int, num_gpus: int, head_ports: int = 0
) -> tuple[list[str], list[int]]:
    """`ray start` for any node, every port pinned: Ray's defaults (6379, 8265, 10001, ...)
    clash with other clusters on the machine, such as a developer's or another test
    session's, and with the other nodes of this one. Also `head_ports` more free ports,
    for the head's own servers."""
    ports, workers = _ports(6 + head_ports)
    node, objects, agent, agent_grpc, runtime_env, metrics = ports[:6]
    ray = str(Path(sys.executable).parent / "ray")
    command = [
        ray, "start",
        "--node-ip-address", HOST,
        "--node-manager-port", str(node),
        "--object-manager-port", str(objects),
        "--dashboard-agent-listen-port", str(agent),
        "--dashboard-agent-grpc-port", str(agent_grpc),
        "--runtime-env-agent-port", str(runtime_env),
        "--metrics-export-port", str(metrics),
        "--min-worker-port", str(workers),
        "--max-worker-port", str(workers + WORKER_PORTS - 1),
        "--num-cpus", str(num_cpus),
        "--num-gpus", str(num_gpus),
        "--temp-dir", str(temp_dir),
        "--disable-usage-stats",
    ]  # fmt: skip
    return command, ports[6:]


def _head_command(temp_dir: Path, num_cpus: int) -> tuple[list[str], int, int]:
    command, (gcs, dashboard, client) = _node_command(temp_dir, num_cpus, 0, head_ports=3)
    command += [
        "--head",
        "--port", str(gcs),
        "--dashboard-host", HOST,
        "--dashboard-port", str(dashboard),
        "--ray-client-server-port", str(client),
    ]  # fmt: skip
    return command, gcs, dashboard


def _start_env(env: dict[str, str], token: str) -> dict[str, str]:
    """The environment of every cluster process, job drivers included."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return (
        os.environ
        | env
        | {
            "PATH": path,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": token,
            # Worker nodes may join (`add_node`); Ray refuses them with this at 0.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
        }
    )


def _wait_for_job_server(cluster: RayCluster, timeout_s: float) -> None:
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            JobSubmissionClient(cluster.dashboard_url, headers=cluster.auth_headers()).list_jobs()
            return
        except Exception as exc:  # refused, or 5xx until the dashboard's job module is up
            if time.monotonic() > deadline:
                raise RayClusterError(f"no job server at {cluster.dashboard_url}") from exc
            time.sleep(1)


def _live_processes() -> dict[int, ProcessInfo]:
    """Zombies are left out: they are dead and only wait for their parent to reap them."""
    return {pid: info for pid, info in all_processes().items() if not info.zombie}


def _members(temp_dir: Path, table: dict[int, ProcessInfo]) -> dict[int, int]:
    """{pid: start time} of the processes naming `temp_dir` on their command line or
    working under it (job drivers, whose parent may be gone), and all their descendants."""
    root = str(temp_dir)
    named = {
        pid
        for pid, info in table.items()
        if root in info.command or info.cwd == root or info.cwd.startswith(root + os.sep)
    }
    named.discard(os.getpid())
    return {pid: table[pid].started for pid in with_descendants(table, named)}


def cluster_processes(temp_dir: Path) -> set[int]:
    """The pids of the cluster (or other server) keeping its files in `temp_dir`."""
    return set(_members(temp_dir, _live_processes()))


def _alive(seen: dict[int, int], table: dict[int, ProcessInfo]) -> dict[int, int]:
    return {
        pid: started
        for pid, started in seen.items()
        if pid in table and table[pid].started == started
    }


def _signal_all(pids: dict[int, int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_cluster(temp_dir: Path, grace_s: float = STOP_GRACE_S) -> None:
    """End every process of the cluster in `temp_dir`, SIGTERM then SIGKILL; raise if one
    is left. Processes seen once are followed by pid and start time, since a dashboard
    module whose parent died no longer descends from anything naming `temp_dir`."""
    seen = _members(temp_dir, _live_processes())
    _signal_all(seen, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _alive(seen, _live_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while True:
        table = _live_processes()
        left = _alive(seen, table) | _members(temp_dir, table)
        if not left:
            return
        if time.monotonic() > deadline:
            raise RayClusterError(
                f"processes of the Ray cluster in {temp_dir} outlived SIGKILL: {sorted(left)}"
            )
        _signal_all(left, signal.SIGKILL)  # again each round: a dying raylet may start a worker
        seen |= left
        time.sleep(0.2)


def _ray_start(command: list[str], env: dict[str, str], temp_dir: Path) -> None:
    try:
        started = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            start_new_session=True,  # a Ctrl-C meant for the tests does not reach the cluster
        )
    except BaseException:
        stop_cluster(temp_dir)
        raise
    if started.returncode != 0:
        stop_cluster(temp_dir)
        raise RayClusterError(
            f"ray start exited with {started.returncode}:\n{started.stdout}{started.stderr}"
        )


def start_cluster(temp_dir: Path, env: dict[str, str], num_cpus: int = 2) -> RayCluster:
    """Start a head node keeping its files under `temp_dir` (keep the path short: Ray's
    Unix sockets live under it, and socket paths are capped at 107 bytes). Its processes,
    and so its jobs, run with `env` added, e.g. the S3 server's AWS_* variables, as a pod
    gets them from a Kubernetes Secret."""
    token = secrets.token_hex(32)
    command, gcs, dashboard = _head_command(temp_dir, num_cpus)
    env = _start_env(env, token)
    cluster = RayCluster(f"http://{HOST}:{dashboard}", f"{HOST}:{gcs}", temp_dir, token, env)
    _ray_start(command, env, temp_dir)
    try:
        _wait_for_job_server(cluster, START_TIMEOUT_S)
    except BaseException:
        stop_cluster(temp_dir)
        raise
    return cluster


@dataclass(frozen=True)
class RayNode:
    """A worker node of a test cluster: its own raylet, agents and workers, its files in
    its own `temp_dir`."""

    temp_dir: Path

    def processes(self, named: str = "") -> list[int]:
        """Pids of the node's live processes, those whose command line holds `named`."""
        table = _live_processes()
        return sorted(
            pid
            for pid in _members(self.temp_dir, table)
            if pid in table and named in table[pid].command
        )

    def kill(self) -> None:
        """The node lost, as when its machine or pod goes: every process of it SIGKILLed
        at once, nothing told first."""
        stop_cluster(self.temp_dir, grace_s=0)


def add_node(cluster: RayCluster, num_cpus: int = 1, num_gpus: int = 0) -> RayNode:
    """Start a worker node joining `cluster`, its files in a new directory under the
    cluster's (so stopping the cluster stops it too). `num_gpus` are declared, not real:
    Ray schedules by them, and a CPU build of torch then runs on the CPU."""
    temp_dir = Path(tempfile.mkdtemp(prefix="n", dir=cluster.temp_dir))
    command, _ = _node_command(temp_dir, num_cpus, num_gpus)
    command += ["--address", cluster.gcs_address]
    _ray_start(command, cluster.env, temp_dir)
    return RayNode(temp_dir)


@contextlib.contextmanager
def running_ray_cluster(env: dict[str, str], num_cpus: int = 2) -> Iterator[RayCluster]:
    """A head node for the `with` body, stopped and its directory removed however the body
    exits."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rayc-", dir="/tmp"))
    try:
        yield start_cluster(temp_dir, env, num_cpus)
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir)
