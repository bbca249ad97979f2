"""Two runs on one output: the second is refused while the first holds the lease."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import fsspec
import pyarrow.parquet as pq
import pytest

from pipeline.exceptions import OutputBusyError
from pipeline.output.lease import OutputLease
from tests.support.data import sample_images, webdataset_members, write_tar

pytestmark = pytest.mark.faults
fs = fsspec.filesystem("file")


def _lease_file(root) -> str:
    return str(root / "_shardscribe" / "lease.json")


def _write_lease(root, **fields) -> None:
    (root / "_shardscribe").mkdir(parents=True, exist_ok=True)
    record = {
        "owner": "someone",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "expires": time.time() + 60,
    } | fields
    (root / "_shardscribe" / "lease.json").write_text(json.dumps(record))


def test_a_held_lease_refuses_a_second_run_until_released(tmp_path):
    first, second = OutputLease(fs, str(tmp_path), 60), OutputLease(fs, str(tmp_path), 60)
    first.acquire()
    with pytest.raises(
        OutputBusyError, match=rf"in use by another run \(host .*, pid {os.getpid()}\)"
    ):
        second.acquire()
    first.release()
    assert not os.path.exists(_lease_file(tmp_path))
    second.acquire()
    with pytest.raises(OutputBusyError):
        first.check()  # the first run lost the output: its next commit is refused
    second.check()
    second.release()


def test_a_lease_left_by_a_dead_process_on_this_host_is_taken_over(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    _write_lease(tmp_path, pid=int(dead.stdout))
    lease = OutputLease(fs, str(tmp_path), 60)
    lease.acquire()
    lease.release()


def test_a_live_lease_of_another_host_blocks_until_it_expires(tmp_path):
    _write_lease(tmp_path, host="elsewhere", pid=1)
    with pytest.raises(OutputBusyError, match="host elsewhere, pid 1"):
        OutputLease(fs, str(tmp_path), 60).acquire()
    _write_lease(tmp_path, host="elsewhere", pid=1, expires=time.time() - 1)
    lease = OutputLease(fs, str(tmp_path), 60)
    lease.acquire()
    lease.release()


def test_two_runs_started_together_one_refused_no_duplicates(tmp_path, tiny_model):
    for shard in range(3):
        batch = sample_images(4, offset=4 * shard)
        write_tar(tmp_path / "in" / f"{shard}.tar", webdataset_members(batch))
    command = [
        sys.executable,
        "-m",
        "jobs",
        "run",
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "out"),
        "--model",
        tiny_model,
        "--max-new-tokens",
        "6",
    ]
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(_lease_file(tmp_path / "out")) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Paused while it holds the lease: a tiny run could otherwise finish before the second
    # one is through its start-up, and the second would find nothing left to refuse.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, first_log = first.communicate(timeout=300)
    assert first.returncode == 0, first_log[-2000:]
    assert second.returncode == 2
    assert f"output {tmp_path / 'out'} is in use by another run" in second.stderr
    keys = [
        row["key"]
        for path in (tmp_path / "out").glob("*.parquet")
        for row in pq.read_table(path).to_pylist()
    ]
    assert sorted(keys) == sorted(f"s{i:04d}" for i in range(12))
    assert not os.path.exists(_lease_file(tmp_path / "out"))
