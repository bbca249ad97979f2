"""Scaling figures: driver peak RSS and images/s as the dataset grows, and what a shard
costs the object store.

    python -m benchmarks.scale --sizes 1000,10000,100000 [--dir DIR] [--s3]
    python -m benchmarks.scale --shards 1000,10000 [--s3]     # one image per shard

Each size runs in a fresh process (so each peak RSS is that run's own), with the tiny
model and tiny text-line images in WebDataset shards of `--per-shard` images (`--shards`:
one image each, what bulk OCR of one PDF per shard looks like). After the run the same
process times a no-op rerun (every shard committed: listing and ledger only, no Ray) and
`status`. With `--s3` the shards and the output live on a SeaweedFS S3 server on
loopback, reached through a counting proxy, and the figures include requests per shard
by HTTP method and bytes written per row. One JSON object per size is printed, then a
table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import process_role
from pipeline.inputs.webdataset import tar_bytes
from pipeline.synthetic.demo_lines import line_images
from tests.support.processes import all_processes, with_descendants

DISTINCT_IMAGES = 64  # rendered once, repeated: throughput does not depend on the text


def write_input(uri: str, images: int, per_shard: int, storage_options: dict) -> None:
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri, **storage_options)
    fs.makedirs(root, exist_ok=True)
    pngs = line_images(DISTINCT_IMAGES, seed=0)
    for shard, start in enumerate(range(0, images, per_shard)):
        members = [
            (f"{i:08d}.png", pngs[i % DISTINCT_IMAGES])
            for i in range(start, min(start + per_shard, images))
        ]
        fs.pipe_file(f"{root}/part-{shard:05d}.tar", tar_bytes(members))


def _config(input_uri: str, output_uri: str, model: str):
    from pipeline.config_loading import validate_config

    return validate_config(
        {
            "input": {"uri": input_uri},
            "output": {"uri": output_uri},
            "model": {"name": model},
            "generation": {"max_new_tokens": 16},
            "compute": {"batch_size": 64},
            "progress": {"log_interval_s": 60},
        }
    )


def _process_tree_cpu_s(root: int) -> dict[str, float]:
    """CPU seconds (user + system, reaped children included) of every process under
    `root`, summed by role: the driver, Ray's own daemons and its workers. CPU time, not
    wall time, so the figures hold on a machine that is busy with other work."""
    table = all_processes()
    totals: dict[str, float] = {}
    for pid in with_descendants(table, {root}):
        role = process_role(pid == root, table[pid].command)
        totals[role] = totals.get(role, 0.0) + table[pid].cpu_s
    return totals


def run_one(step: str, input_uri: str, output_uri: str, model: str) -> dict:
    """One step in this process: the run (the driver's RSS before and at its peak, and the
    rates), a no-op rerun once every shard is committed, or `status`."""
    import ray

    from pipeline.output.status import output_status
    from pipeline.run.runner import run_job

    config = _config(input_uri, output_uri, model)
    start = time.perf_counter()
    if step == "status":
        output_status(output_uri, config.storage)
        return {"status_s": round(time.perf_counter() - start, 2)}
    if step == "rerun":  # nothing to do: no Ray is started
        assert run_job(config).shards_committed == 0
        return {"noop_rerun_s": round(time.perf_counter() - start, 2)}
    ray.init(num_cpus=os.cpu_count(), log_to_driver=False)
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu_before = _process_tree_cpu_s(os.getpid())
    start = time.perf_counter()
    summary = run_job(config)
    seconds = time.perf_counter() - start
    cpu_after = _process_tree_cpu_s(os.getpid())
    shards = max(summary.shards_committed, 1)
    cpu_ms = {
        role: round(1000 * (cpu_after[role] - cpu_before.get(role, 0.0)) / shards, 2)
        for role in sorted(cpu_after)
    }
    return {
        "rows": summary.rows,
        "shards": summary.shards_committed,
        "failed": len(summary.failed),
        "seconds": round(seconds, 1),
        "images_per_s": round(summary.rows / seconds, 1),
        "shards_per_s": round(summary.shards_committed / seconds, 1),
        "first_commit_s": summary.startup.get("first_commit"),
        "driver_rss_before_run_mb": round(before_mb, 1),
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpu_ms_per_shard": cpu_ms,
        # what the CPU work alone allows on this machine's cores, however busy it is
        "cpu_bound_shards_per_s": round(1000 * os.cpu_count() / sum(cpu_ms.values()), 1),
    }


def _output_bytes(uri: str, storage_options: dict) -> int:
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri, **storage_options)
    return sum(fs.du(path) for path in fs.glob(f"{root}/*.parquet"))


def measure(size: int, per_shard: int, workdir: Path, model: str, s3) -> dict:
    name = f"n{size}-{int(time.time())}"  # a fresh input and output per measurement
    if s3 is None:
        env, options = dict(os.environ), {}
        input_uri, output_uri = str(workdir / name / "in"), str(workdir / name / "out")
    else:
        server, proxy = s3
        env = os.environ | server.env() | {"AWS_ENDPOINT_URL": proxy.endpoint_url}
        options = {"endpoint_url": server.endpoint_url, "key": server.access_key_id,
                   "secret": server.secret_access_key}  # fmt: skip
        input_uri, output_uri = f"s3://scale/{name}/in", f"s3://scale/{name}/out"
    write_input(input_uri, size, per_shard, options)
    figures = {"images": size, "per_shard": per_shard}
    for step in ("run", "rerun", "status"):
        before = dict(proxy.stats.methods) if s3 else {}
        result = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale", "--one", step, input_uri, output_uri, model],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        figures |= json.loads(result.stdout)
        if s3:
            after, shards = proxy.stats.methods, figures["shards"]
            figures[f"{step}_requests_per_shard"] = {
                method: round((after[method] - before.get(method, 0)) / shards, 2)
                for method in after
            }
    figures["bytes_written_per_row"] = round(_output_bytes(output_uri, options) / size, 1)
    return figures


@contextlib.contextmanager
def _s3_stack(workdir: Path):
    from tests.support.flaky_proxy import flaky_proxy
    from tests.support.s3server import running_s3_server

    data = Path(tempfile.mkdtemp(prefix="s3-", dir=workdir))
    try:
        with running_s3_server(data) as server:
            server.make_bucket("scale")
            with flaky_proxy(server.endpoint_url, fault_rate=0.0) as proxy:
                yield server, proxy
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--shards", help="shard counts of one image each (sets --per-shard 1)")
    parser.add_argument("--dir", type=Path, default=Path("shardscribe-bench/scale"))
    parser.add_argument("--s3", action="store_true", help="shards and output on a local S3")
    parser.add_argument(
        "--one", nargs=4, metavar=("STEP", "INPUT", "OUTPUT", "MODEL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    from model.tiny import build_random_model

    workdir = args.dir.resolve()
    model = workdir / "random-tiny"
    if not (model / "config.json").exists():
        build_random_model(model, "tiny")
    rows = []
    with _s3_stack(workdir) if args.s3 else contextlib.nullcontext() as s3:
        per_shard = 1 if args.shards else args.per_shard
        for size in map(int, (args.shards or args.sizes).split(",")):
            rows.append(measure(size, per_shard, workdir, str(model), s3))
            print(json.dumps(rows[-1]), flush=True)
    print(
        f"{'images':>8} {'shards':>7} {'images/s':>9} {'shards/s':>9} {'driver peak MB':>15} "
        f"{'first commit s':>15} {'no-op rerun s':>14} {'status s':>9} {'bytes/row':>10}"
    )
    for r in rows:
        print(
            f"{r['images']:>8} {r['shards']:>7} {r['images_per_s']:>9.1f} "
            f"{r['shards_per_s']:>9.1f} {r['driver_peak_rss_mb']:>15.1f} "
            f"{r['first_commit_s']:>15} {r['noop_rerun_s']:>14} {r['status_s']:>9} "
            f"{r['bytes_written_per_row']:>10.1f}"
        )


if __name__ == "__main__":
    main()
