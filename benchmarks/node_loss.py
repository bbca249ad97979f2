"""What losing worker nodes and a preemption cost, on a three-node cluster on this machine.

    python -m benchmarks.node_loss [--shards 16] [--images-per-shard 6] [--json]

A head (the driver and the read tasks, no GPU) and two worker nodes declaring one GPU
each (one generation actor each, on the CPU), every node its own `ray start` on
loopback; a tiny random model; input and output on local disk. Each scenario runs on a
fresh output and is compared row by row with the clean run:

- clean: no fault;
- one node lost: one worker node SIGKILLed whole (raylet, agents, workers) at the
  second commit;
- all nodes lost: both SIGKILLed at the second commit, a new node joining 20 s later;
- preempted: SIGTERM to the driver at the second commit (it finishes the shards in
  flight within output.shutdown_grace_s and exits 143), then a plain rerun.

"after" is the time from the fault to the end of the run; "clean after" is what the
clean run took from its second commit to its end, so their difference is what the fault
cost. Needs the test extras (it uses the test suite's cluster and run helpers).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import tempfile
import time
from pathlib import Path

from model import build_tiny_model
from tests.support.raycluster import RayCluster, add_node, running_ray_cluster
from tests.support.soak import DriverRun, committed_count, compare, read_rows, write_input

TIMEOUT_S = 600.0
NEW_NODE_AFTER_S = 20.0
RETRIES = re.compile(r"shard retries: ([^;]+);")


def _run(cluster: RayCluster, command: list[str]) -> DriverRun:
    return DriverRun(command, ray_env=cluster.env | {"RAY_ADDRESS": cluster.gcs_address})


def _second_commit(run: DriverRun, output: Path) -> float:
    if not run.wait_until(lambda: committed_count(output) >= 2, TIMEOUT_S):
        raise RuntimeError(f"the run ended before its second commit:\n{run.stderr()[-2000:]}")
    return run.elapsed


def _scenario(cluster, command, output, fault) -> dict:
    """Run once, apply `fault` at the second commit; the figures."""
    nodes = [add_node(cluster, num_cpus=1, num_gpus=1) for _ in range(2)]
    try:
        run = _run(cluster, command)
        at = _second_commit(run, output)
        committed_at_fault = committed_count(output)
        fault(run, nodes)
        code = run.finish(TIMEOUT_S)
        retries = RETRIES.search(run.stderr())
        return {
            "exit": code,
            "run_s": round(run.elapsed, 1),
            "fault_at_s": round(at, 1),
            "after_s": round(run.elapsed - at, 1),
            "committed_at_fault": committed_at_fault,
            "committed_at_exit": committed_count(output),
            "shard_retries": retries.group(1) if retries else "?",
        }
    finally:
        for node in nodes:
            node.kill()


def _lose(count: int, rejoin: bool, cluster: RayCluster):
    def fault(run: DriverRun, nodes: list) -> None:
        for node in nodes[:count]:
            node.kill()
        if rejoin:
            time.sleep(NEW_NODE_AFTER_S)
            nodes.append(add_node(cluster, num_cpus=1, num_gpus=1))

    return fault


def _preempt(run: DriverRun, nodes: list) -> None:
    run.process.send_signal(signal.SIGTERM)


def measure(shards: int, per_shard: int, max_new_tokens: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="nodeloss-"))
    model = str(build_tiny_model(root / "model"))
    input_dir = write_input(root / "in", shards, per_shard)

    def command(output: Path) -> list[str]:
        return [
            *("python", "-m", "jobs", "run", "--model", model, "--input", str(input_dir)),
            *("--output", str(output), "--max-new-tokens", str(max_new_tokens)),
            *("--batch-size", "2", "--log-interval-s", "5", "--backoff-s", "0.5"),
        ]

    results: dict = {"shards": shards, "images_per_shard": per_shard}
    with running_ray_cluster({}, num_cpus=2) as cluster:
        scenarios = {
            "clean": lambda run, nodes: None,
            "one node lost": _lose(1, False, cluster),
            "all nodes lost": _lose(2, True, cluster),
            "preempted": _preempt,
        }
        for name, fault in scenarios.items():
            output = root / name.replace(" ", "-")
            figures = _scenario(cluster, command(output), output, fault)
            if name == "preempted":
                rerun = _run(cluster, command(output))
                figures["rerun_exit"] = rerun.finish(TIMEOUT_S)
                figures["rerun_s"] = round(rerun.elapsed, 1)
            if name == "clean":
                clean_rows, _ = read_rows(output)
            result = compare(clean_rows, output)
            figures |= {"rows_lost": result.rows_lost, "rows_duplicated": result.rows_duplicated}
            results[name] = figures
    return results


def _print(results: dict) -> None:
    clean_after = results["clean"]["after_s"]
    print(
        f"{results['shards']} shards x {results['images_per_shard']} images; "
        f"clean run {results['clean']['run_s']} s, {clean_after} s from its 2nd commit to "
        "its end"
    )
    print("| scenario | exit | run s | after fault s | cost s | committed at fault / exit "
          "| shard retries | rows lost / duplicated |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, f in results.items():
        if not isinstance(f, dict):
            continue
        rerun = f" (rerun: exit {f['rerun_exit']}, {f['rerun_s']} s)" if "rerun_s" in f else ""
        print(
            f"| {name} | {f['exit']}{rerun} | {f['run_s']} | {f['after_s']} | "
            f"{f['after_s'] - clean_after:+.1f} | {f['committed_at_fault']} / "
            f"{f['committed_at_exit']} | {f['shard_retries']} | "
            f"{f['rows_lost']} / {f['rows_duplicated']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--images-per-shard", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    results = measure(args.shards, args.images_per_shard, args.max_new_tokens)
    if args.json:
        print(json.dumps(results))
    else:
        _print(results)


if __name__ == "__main__":
    main()
