"""The Ray Data plan: shards -> read (CPU) -> decode + preprocess (CPU) -> generate (actors)."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import ray
from ray.data import ActorPoolStrategy, Dataset
from ray.util.annotations import RayDeprecationWarning

from pipeline.cluster import shared_cpu_threads
from pipeline.inputs.shards import Shard
from pipeline.job_config import ComputeSettings, JobConfig
from pipeline.run.reading import read_and_preprocess
from pipeline.run.stages import GenerationStage

log = logging.getLogger(__name__)
AUTO_CHUNK_ROWS = 64  # rows per block between the CPU tasks and the actors, batch size auto
# Blocks an actor serves at once, one thread each; their rows feed one engine on the
# actor's model thread, so shards smaller than a batch still fill it
# (`model.shared_batches`), and a continuous set stays full while blocks end.
BLOCKS_PER_ACTOR = 16
# Small shards share a read task and its blocks: each Ray task, block and actor call
# costs the driver milliseconds of scheduling, as much as a one-image shard's whole work.
# A shard of this size or more keeps a task of its own, so a slow or hung large shard
# still holds up no other; and a run keeps at least TASKS_PER_CPU tasks per cluster CPU,
# so a run of few shards spreads over the cluster and commits them one by one as before,
# and an autoscaling pool sees blocks queue up and grows (at 4 per CPU, 120 small shards
# on a cluster of 2 CPUs never grew onto a node that joined: test_node_loss).
TASK_BYTES = 8 << 20
TASK_SHARDS = 64
TASKS_PER_CPU = 16


@dataclass(frozen=True)
class ActorResources:
    min_actors: int
    max_actors: int | None  # None: as many as the cluster can hold
    gpus_per_actor: float
    cpus_per_actor: float
    torch_threads: int | None  # None: Ray's default (its CPU reservation)

    def pool(self) -> ActorPoolStrategy:
        """Ray Data's actor pool: fixed, or autoscaling between the bounds (it adds an
        actor while blocks wait and one can be placed, and removes idle ones)."""
        concurrency = {
            # Twice as many queued as served, so blocks wait on the actor, ready, and the
            # pool sees them (it grows at 1x what its actors serve; see build_plan).
            "max_tasks_in_flight_per_actor": 2 * BLOCKS_PER_ACTOR,
            "max_concurrent_calls_per_actor": BLOCKS_PER_ACTOR,
            "enable_true_multi_threading": True,
        }
        if self.min_actors == self.max_actors:
            return ActorPoolStrategy(size=self.min_actors, **concurrency)
        return ActorPoolStrategy(min_size=self.min_actors, max_size=self.max_actors, **concurrency)


def actor_resources(compute: ComputeSettings) -> ActorResources:
    """Unset values follow the cluster: one actor per GPU when it has GPUs (and more as
    GPUs join), else one CPU actor."""
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    gpus = compute.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if cluster_gpus else 0.0
    least, most = compute.actor_pool(cluster_gpus, gpus)
    threads = compute.threads_per_actor
    if threads is None and not gpus:
        # Generation dominates on CPU; decode tasks are short and take what is left.
        threads = shared_cpu_threads(most or least)
    return ActorResources(least, most, gpus, compute.cpus_per_actor, threads)


def pack_shards(shards: list[Shard], least_tasks: int) -> Iterator[list[Shard]]:
    """Consecutive shards in groups of at most TASK_SHARDS and about TASK_BYTES, and
    small enough to make `least_tasks` groups: a read task each. Each shard is still
    committed, retried and counted on its own."""
    most = max(1, min(TASK_SHARDS, len(shards) // least_tasks))
    group: list[Shard] = []
    size = 0
    for shard in shards:
        if group and (len(group) == most or size + shard.size > TASK_BYTES):
            yield group
            group, size = [], 0
        group.append(shard)
        size += shard.size
    if group:
        yield group


def build_plan(shards: list[Shard], config: JobConfig, resources: ActorResources) -> Dataset:
    """Shards packed into read tasks (`pack_shards`: a large shard alone, small ones
    together), each read, decoded and preprocessed by exactly one CPU task, so a hung or
    slow large shard holds up no other; then the actor pool generates.

    A dead generation actor is restarted when there is room for it; the chunk it had in
    flight fails at once and its shard is redone in the runner's next pass. The CPU tasks
    yield chunks of `batch_size` rows (`AUTO_CHUNK_ROWS` with an auto batch size, which
    each actor then splits into batches it sizes itself), and the actors take each chunk
    as it comes. The CPU tasks stay apart from the actors as long as their CPU share
    differs from the actors'; with equal shares Ray fuses them.
    """
    least_tasks = TASKS_PER_CPU * max(1, int(ray.cluster_resources().get("CPU", 1)))
    groups = pack_shards(shards, least_tasks)
    items = [{"shards": [shard.to_item() for shard in group]} for group in groups]
    with warnings.catch_warnings():
        # Ray 2.60 deprecates `ray_remote_args_fn` and extra remote args such as
        # `max_task_retries` (removal announced for 2.64, hence the bound in
        # pyproject.toml) and offers no named replacement for either yet.
        warnings.simplefilter("ignore", RayDeprecationWarning)
        dataset = _plan(items, config, resources)
    # An actor's blocks all feed one engine, so an actor serving BLOCKS_PER_ACTOR of them
    # is saturated: an autoscaling pool grows then, where an actor can be placed. Ray
    # Data's default (1.75: as many again three quarters queued) waited for a queue the
    # reads did not always build; a node that joined mid-run then got no actor.
    dataset.context.autoscaling_config = dataclasses.replace(
        dataset.context.autoscaling_config, actor_pool_util_upscaling_threshold=1.0
    )
    return dataset


def _plan(items: list[dict], config: JobConfig, resources: ActorResources) -> Dataset:
    batch_size = config.compute.batch_size
    chunk_rows = AUTO_CHUNK_ROWS if batch_size == "auto" else batch_size
    return (
        ray.data.from_items(items, override_num_blocks=len(items))
        .map_batches(
            read_and_preprocess,
            batch_size=1,
            batch_format="pyarrow",
            fn_kwargs={
                "input_settings": config.input,
                "storage": config.storage,
                "model_settings": config.model,
                "chunk_rows": chunk_rows,
            },
            num_cpus=config.compute.cpus_per_task,
        )
        .map_batches(
            GenerationStage,
            # Each block is already one batch (a shard's chunk). Letting Ray assemble full
            # batches across blocks would hold a finished shard's rows back until other
            # shards deliver, and a hung shard would then stall everyone.
            batch_size=None,
            batch_format="numpy",
            fn_constructor_kwargs={
                "model_settings": config.model,
                "generation": config.generation,
                "label": config.label,
                "torch_threads": resources.torch_threads,
                "batch_size": batch_size,
                "batching": config.compute.batching,
            },
            compute=resources.pool(),
            # Ray Data refuses `num_gpus` with batch_size=None (it wants GPU users to size
            # their batches; these actors size their own), so the GPU request reaches the
            # actors through the remote-args function, which it applies as it is.
            ray_remote_args_fn=partial(dict, num_gpus=resources.gpus_per_actor),
            num_cpus=resources.cpus_per_actor,
            # A batch in flight on an actor that dies fails at once instead of waiting for
            # the actor's restart (which, with its node gone, may come only when another
            # actor is released at the end of the pass); the pass goes on with the live
            # actors and its shard is redone in the next pass (see `run_pass`).
            max_task_retries=0,
        )
    )
