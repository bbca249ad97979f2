"""Drive a job: discover, skip committed shards, run passes, commit, retry, summarise."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from model import ModelLoadError, check_model
from pipeline.assembler import ShardAssembler, ShardFailure
from pipeline.commit import commit_shard, committed_files
from pipeline.config import JobConfig
from pipeline.ledger import Ledger, output_settings
from pipeline.plan import ActorResources, actor_resources, build_plan, connect_ray
from pipeline.progress import Progress
from pipeline.shards import Shard, discover_shards
from pipeline.storage import open_filesystem

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    output: str
    shards_total: int
    shards_skipped: int
    shards_committed: int = 0
    rows: int = 0
    row_errors: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def line(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        return (
            f"{self.shards_committed} shards committed, {self.shards_skipped} already done, "
            f"{len(self.failed)} failed; {self.rows} rows, {self.row_errors} row errors; "
            f"{rate:.1f} images/s over {self.seconds:.1f}s"
        )


class _Job:
    """One run's state: the output, the fingerprint, progress and the summary."""

    def __init__(self, config: JobConfig, ledger: Ledger, fingerprint: str, summary: RunSummary):
        self.config = config
        self.ledger = ledger
        self.fingerprint = fingerprint
        self.summary = summary
        self.earlier_failures = {failure.shard for failure in ledger.failures()}
        self.progress: Progress | None = None

    def commit(self, shard_id: str, rows: list[dict]) -> None:
        table = commit_shard(self.ledger.fs, self.ledger.root, shard_id, rows, self.fingerprint)
        errors = table.num_rows - table.column("error").null_count
        self.summary.shards_committed += 1
        self.summary.rows += table.num_rows
        self.summary.row_errors += errors
        if shard_id in self.earlier_failures:
            self.ledger.clear_failure(shard_id)
        self.progress.shard_committed(table.num_rows)

    def run_pass(self, shards: list[Shard], resources: ActorResources) -> dict[str, ShardFailure]:
        """Stream every shard once through the plan; commit each as it completes."""
        assembler = ShardAssembler({shard.id for shard in shards})
        dataset = build_plan(shards, self.config, resources)
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                for row in batch.to_pylist():
                    rows = assembler.add(row)
                    if rows is not None:
                        self._commit_or_fail(assembler, row["shard"], rows)
                self.progress.tick()
        except Exception as error:  # Ray aborted the pass; shards not committed are retried
            if "ModelLoadError" in str(error):
                raise ModelLoadError(_model_error_text(error)) from None
            log.warning("pass aborted: %s: %s", type(error).__name__, error)
            assembler.fail_unfinished(f"pass aborted by {type(error).__name__}")
        assembler.fail_unfinished("rows missing at the end of the pass")
        return assembler.failed

    def _commit_or_fail(self, assembler: ShardAssembler, shard_id: str, rows: list[dict]) -> None:
        try:
            self.commit(shard_id, rows)
        except OSError as error:
            message = f"storage: commit failed: {type(error).__name__}: {error}"
            assembler.fail(shard_id, ShardFailure(message, True))


def _model_error_text(error: Exception) -> str:
    text = str(error)
    return text[text.index("ModelLoadError") :].splitlines()[0]


def _backoff(config: JobConfig, attempt: int) -> float:
    return min(config.retry.backoff_s * 2 ** (attempt - 1), config.retry.backoff_max_s)


def run_job(config: JobConfig) -> RunSummary:
    """Run the job to the end. Shards that fail after their retries are recorded in the
    ledger and named in the summary; the others are committed."""
    start = time.monotonic()
    input_fs, input_root = open_filesystem(config.input.uri, config.storage)
    shards = discover_shards(input_fs, input_root, config.input)
    identity = check_model(config.model)
    output_fs, output_root = open_filesystem(config.output.uri, config.storage)
    ledger = Ledger(output_fs, output_root)
    fingerprint = ledger.start_run(
        output_settings(config, identity), config.input.uri, len(shards), config.output.overwrite
    )
    done = committed_files(output_fs, output_root)
    pending = [shard for shard in shards if shard.id not in done]
    summary = RunSummary(config.output.uri, len(shards), len(shards) - len(pending))
    log.info(
        "%d shards under %s, %d already committed",
        len(shards),
        config.input.uri,
        summary.shards_skipped,
    )
    if pending:
        connect_ray(config.compute.ray_address)
        job = _Job(config, ledger, fingerprint, summary)
        _run_with_retries(job, pending, actor_resources(config.compute))
    summary.seconds = time.monotonic() - start
    return summary


def _run_with_retries(job: _Job, pending: list[Shard], resources: ActorResources) -> None:
    config = job.config
    job.progress = Progress(len(pending), config.progress.log_interval_s)
    attempts: Counter[str] = Counter()
    try:
        while pending:
            failures = job.run_pass(pending, resources)
            retry = []
            for shard in pending:
                if shard.id not in failures:
                    continue
                attempts[shard.id] += 1
                failure = failures[shard.id]
                if failure.retryable and attempts[shard.id] < config.retry.max_attempts:
                    retry.append(shard)
                    continue
                log.error(
                    "shard %s failed after %d attempt(s): %s",
                    shard.id,
                    attempts[shard.id],
                    failure.error,
                )
                job.ledger.record_failure(shard.id, failure.error, attempts[shard.id])
                job.summary.failed[shard.id] = failure.error
                job.progress.shard_failed()
            if retry:
                delay = _backoff(config, max(attempts[s.id] for s in retry))
                log.warning(
                    "retrying %d shard(s) in %.1fs: %s",
                    len(retry),
                    delay,
                    ", ".join(s.id for s in retry[:5]),
                )
                time.sleep(delay)
            pending = retry
    finally:
        job.progress.close()
