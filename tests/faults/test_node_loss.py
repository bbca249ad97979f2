"""Clusters as they really fail, on one machine: a head node (the driver and the read
tasks; no GPU, so no generation actor) and worker nodes with one declared GPU each (one
actor each), every node its own raylet. Worker nodes are lost whole (raylet, agents and
workers SIGKILLed together), the driver is preempted (SIGTERM) or killed, and the pool
grows onto a node that joins. The input and the output are on the S3 server; every
output row is compared with `model.generate` on the same image."""

from __future__ import annotations

import functools
import io
import re
import signal
import tarfile
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest

from tests.support.raycluster import RayCluster, RayNode, add_node, running_ray_cluster
from tests.support.soak import CORRUPT_IMAGE, DriverRun, write_input

pytestmark = pytest.mark.faults
SHARDS, PER_SHARD = 24, 6
MAX_NEW_TOKENS = 64
RUN_TIMEOUT_S = 300.0
COPIES = "abcde"  # of the input, for the run the pool grows in
DONE = re.compile(r"done: (\d+) shards committed, (\d+) already done, (\d+) failed")


@pytest.fixture(scope="module")
def cluster(s3):
    with running_ray_cluster(s3.env(), num_cpus=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def source(s3, tmp_path_factory) -> dict[tuple[str, str], bytes]:
    """The shards on the S3 server; {(shard, key): image bytes}."""
    local = write_input(tmp_path_factory.mktemp("nodes"), SHARDS, PER_SHARD)
    s3.make_bucket("nodes")
    fs = s3.filesystem()
    images = {}
    for tar in sorted(local.glob("*.tar")):
        fs.put_file(str(tar), f"nodes/in/{tar.name}")
        with tarfile.open(tar) as archive:
            for member in archive.getmembers():
                key, extension = member.name.rsplit(".", 1)
                if extension == "png":  # not the .txt and .json sidecars
                    images[(tar.stem, key)] = archive.extractfile(member).read()
    return images


@pytest.fixture(scope="module")
def expected(source, reference):
    """expected(max_new_tokens) -> {(shard, key): text} from `model.generate` image by
    image; None for the corrupt image."""

    @functools.cache
    def texts(max_new_tokens: int = MAX_NEW_TOKENS) -> dict[tuple[str, str], str | None]:
        return {
            row: None
            if data == CORRUPT_IMAGE
            else reference.text(data, max_new_tokens=max_new_tokens)
            for row, data in source.items()
        }

    return texts


@pytest.fixture
def nodes(cluster: RayCluster):
    """Two worker nodes; any node a test adds joins the list; all are lost at the end."""
    started = [add_node(cluster, num_cpus=1, num_gpus=1) for _ in range(2)]
    yield started
    for node in started:
        node.kill()


def _command(tiny_model: str, output: str, *flags: str, source: str = "in") -> list[str]:
    return [
        *("python", "-m", "jobs", "run", "--model", tiny_model),
        *("--input", f"s3://nodes/{source}/", "--output", f"s3://nodes/{output}/"),
        *("--max-new-tokens", str(MAX_NEW_TOKENS), "--batch-size", "2"),
        *("--log-interval-s", "1", "--backoff-s", "0.5", *flags),
    ]


def _start(
    cluster: RayCluster, tiny_model: str, output: str, *flags: str, source: str = "in"
) -> DriverRun:
    env = cluster.env | {"RAY_ADDRESS": cluster.gcs_address}
    return DriverRun(_command(tiny_model, output, *flags, source=source), ray_env=env)


def _committed(s3, output: str) -> int:
    fs = s3.filesystem()
    fs.invalidate_cache()
    return len(fs.glob(f"nodes/{output}/*.parquet"))


def _check(s3, output: str, expected: dict) -> tuple[int, int, int]:
    """(rows lost, rows duplicated, rows wrong) of the output against `expected`."""
    fs = s3.filesystem()
    fs.invalidate_cache()
    rows = Counter()
    wrong = 0
    for path in fs.glob(f"nodes/{output}/*.parquet"):
        table = pq.read_table(io.BytesIO(fs.cat_file(path)))
        for row in table.to_pylist():
            key = (row["shard"], row["key"])
            rows[key] += 1
            text = expected.get(key, "not an input row")
            if text is None:
                wrong += not (row["text"] is None and row["error"].startswith("decode"))
            else:
                wrong += row["text"] != text or row["error"] is not None
    lost = sum(1 for key in expected if key not in rows)
    duplicated = sum(n - 1 for n in rows.values())
    return lost, duplicated, wrong


def _kill_when(run: DriverRun, condition, nodes: list[RayNode]) -> float:
    """Lose `nodes` once `condition` holds; seconds since the run started."""
    assert run.wait_until(condition, RUN_TIMEOUT_S), run.stderr()[-3000:]
    for node in nodes:
        node.kill()
    return run.elapsed


def _finish(run: DriverRun) -> tuple[int, int]:
    """(exit code, shards committed by the run) once it ends."""
    code = run.finish(RUN_TIMEOUT_S)
    done = DONE.search(run.stderr())
    assert done, run.stderr()[-3000:]
    return code, int(done.group(1))


def test_a_worker_node_lost_mid_run(cluster, nodes, s3, expected, tiny_model):
    """One of two worker nodes lost after two commits (rows of other shards on it, in its
    actor and its object store): the run goes on with the other node, redoes what was
    lost, and the output is exactly `generate`'s."""
    run = _start(cluster, tiny_model, "one-lost")
    killed_at = _kill_when(run, lambda: _committed(s3, "one-lost") >= 2, nodes[:1])
    assert _finish(run) == (0, SHARDS), run.stderr()[-3000:]
    assert _check(s3, "one-lost", expected()) == (0, 0, 0)
    print(f"node lost at {killed_at:.1f}s; run ended {run.elapsed - killed_at:.1f}s later")


def test_every_worker_node_lost_then_a_new_one_joins(cluster, nodes, s3, expected, tiny_model):
    """Both worker nodes lost (no actor anywhere), a new node joins 20 s later: the run
    waits for it instead of failing, then completes exactly."""
    run = _start(cluster, tiny_model, "all-lost")
    killed_at = _kill_when(run, lambda: _committed(s3, "all-lost") >= 2, nodes)
    time.sleep(20)
    assert run.running, run.stderr()[-3000:]
    nodes.append(add_node(cluster, num_cpus=1, num_gpus=1))
    assert _finish(run) == (0, SHARDS), run.stderr()[-3000:]
    assert _check(s3, "all-lost", expected()) == (0, 0, 0)
    print(f"nodes lost at {killed_at:.1f}s; run ended {run.elapsed - killed_at:.1f}s later")


def test_preempted_driver_commits_what_is_in_flight_and_a_rerun_completes(
    cluster, nodes, s3, expected, tiny_model
):
    """SIGTERM to the driver (a preempted pod): exit 143 within the grace period, naming
    how far it got; no shard lost or torn; a plain rerun completes exactly."""
    run = _start(cluster, tiny_model, "preempted", "--shutdown-grace-s", "20")
    assert run.wait_until(lambda: _committed(s3, "preempted") >= 1, RUN_TIMEOUT_S)
    run.process.send_signal(signal.SIGTERM)
    signalled = run.elapsed
    assert run.finish(RUN_TIMEOUT_S) == 143, run.stderr()[-3000:]
    assert run.elapsed - signalled < 25
    last = run.stderr().strip().splitlines()[-1]
    stopped = re.search(rf"interrupted: (\d+) of {SHARDS} shards committed; rerun the same", last)
    assert stopped, last
    assert _committed(s3, "preempted") == int(stopped.group(1))
    assert _check(s3, "preempted", expected())[1:] == (0, 0)  # what is committed is right

    rerun = _start(cluster, tiny_model, "preempted")
    assert _finish(rerun) == (0, SHARDS - int(stopped.group(1))), rerun.stderr()[-3000:]
    assert _check(s3, "preempted", expected()) == (0, 0, 0)


def test_a_killed_driver_leaves_no_actor_on_the_cluster(cluster, nodes, s3, tiny_model):
    """SIGKILL the driver (and its process group) of a run on a shared cluster: its
    generation actors are gone from the worker nodes soon after, the nodes stay up."""
    run = _start(cluster, tiny_model, "driver-killed")
    assert run.wait_until(lambda: _committed(s3, "driver-killed") >= 1, RUN_TIMEOUT_S)
    assert all(_actors(node) for node in nodes)
    run.kill(committed=-1, survey=False)
    deadline = time.monotonic() + 30
    while any(map(_actors, nodes)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [_actors(node) for node in nodes] == [[], []]
    assert all(node.processes() for node in nodes)  # the nodes themselves live on


def _actors(node: RayNode) -> list[int]:
    """Pids of the generation actors running on `node`."""
    return node.processes(named="GenerationStage")


def test_the_actor_pool_grows_onto_a_node_that_joins(cluster, nodes, s3, expected, tiny_model):
    """`--actors 1..2` with one worker node, five times the input: when a second node
    joins mid-run, an actor starts there and takes work; the output is exact (greedy
    texts do not depend on the batch size). The pool grows while its actors serve all the
    blocks they take at once (`build_plan`); five times the input keeps the run going
    long enough after the node joins on a loaded machine."""
    nodes.pop().kill()
    fs = s3.filesystem()
    for path in fs.glob("nodes/in/*.tar"):
        for copy in COPIES:
            fs.copy(path, f"nodes/big/{copy}{path.rsplit('/', 1)[1]}")
    # One image per generate call: generation, not reading, is what the pool waits on,
    # so Ray Data has a reason to grow it.
    flags = ("--actors", "1..2", "--batch-size", "1")
    run = _start(cluster, tiny_model, "grown", *flags, source="big")
    assert run.wait_until(lambda: _committed(s3, "grown") >= 1, RUN_TIMEOUT_S)
    joined = add_node(cluster, num_cpus=1, num_gpus=1)
    nodes.append(joined)
    assert run.wait_until(lambda: bool(_actors(joined)), RUN_TIMEOUT_S), run.stderr()[-3000:]
    assert _finish(run) == (0, len(COPIES) * SHARDS), run.stderr()[-3000:]
    copied = {(c + shard, key): text for (shard, key), text in expected().items() for c in COPIES}
    assert _check(s3, "grown", copied) == (0, 0, 0)
