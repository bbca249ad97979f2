"""Drive a job: discover, skip committed shards, run passes, commit, retry, summarise."""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ray.data.exceptions import ExecutionTimeoutError

from model.engine_stats import EngineStats
from model.load_error import ModelLoadError
from model.settings import ModelSettings
from pipeline.cluster import connect_ray, prepare_ray_data
from pipeline.exceptions import OutputBusyError
from pipeline.failures import Failure, FailureClass
from pipeline.inputs.shards import Shard, discover_shards
from pipeline.inputs.stamps import shard_stamps
from pipeline.job_config import JobConfig
from pipeline.output.commit import commit_shard, output_columns
from pipeline.output.counts import CountsLog
from pipeline.output.lease import OutputLease
from pipeline.output.ledger import Ledger, new_run_id, run_settings
from pipeline.output.listing import split_committed
from pipeline.run.assembler import ShardAssembler
from pipeline.run.commit_queue import CommitQueue
from pipeline.run.interrupts import RunInterrupted, Stop, StopRequest, stop_on_signals
from pipeline.run.plan import ActorResources, actor_resources, build_plan
from pipeline.run.progress import Progress, rate_text
from pipeline.run.rows import ACTOR_STARTUP_STEPS
from pipeline.storage import absolute_url, open_filesystem, storage_access

log = logging.getLogger(__name__)
STARTUP_STEPS = (
    "ray_started",
    "model_checked",
    *ACTOR_STARTUP_STEPS,
    "first_result",  # the first generated rows back on the driver
    "first_commit",
)


@dataclass
class RunSummary:
    output: str
    shards_total: int = 0
    shards_skipped: int = 0
    shards_new: int = 0  # shards this run set out to process
    shards_committed: int = 0
    rows: int = 0
    row_errors: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    retries: Counter[str] = field(default_factory=Counter)  # shard retries by error class
    seconds: float = 0.0
    run_id: str = field(default_factory=new_run_id)
    started: float = field(default_factory=time.time)
    # Seconds from the start to the end of each start-up step (STARTUP_STEPS): Ray up,
    # the model checked on the driver (the two overlap), the actors' steps, the first
    # generated row back on the driver, the first commit.
    startup: dict[str, float] = field(default_factory=dict)
    engine: EngineStats = field(default_factory=EngineStats)  # what the actors computed

    def mark(self, step: str) -> None:
        """Note when a start-up step ended (its first time only)."""
        self.startup.setdefault(step, round(time.time() - self.started, 2))

    def mark_actor(self, steps: dict[str, float | None]) -> None:
        """An actor's start-up steps, as times since the epoch: each the earliest of any
        actor's."""
        for step, at in steps.items():
            if at is not None:
                seconds = round(at - self.started, 2)
                self.startup[step] = min(self.startup.get(step, seconds), seconds)

    def startup_steps(self) -> dict[str, float]:
        """The start-up steps reached, in the order a run takes them."""
        return {step: self.startup[step] for step in STARTUP_STEPS if step in self.startup}

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def record(self, finished: bool) -> dict:
        """This run's entry in the ledger's history."""
        return {
            "run": self.run_id,
            "started": self.started,
            "ended": self.started + self.seconds if finished else None,
            "shards_total": self.shards_total,
            "shards_new": self.shards_new,
            "shards_committed": self.shards_committed,
            "shards_failed": len(self.failed),
            "rows": self.rows,
            "startup_s": self.startup_steps(),
            "row_errors": self.row_errors,
            "generation": self.engine.figures(),
            "images_per_s": round(self.rows / self.seconds, 2) if self.seconds else 0.0,
        }

    def line(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        retries = ", ".join(f"{n} {kind}" for kind, n in sorted(self.retries.items()))
        return (
            f"{self.shards_committed} shards committed, {self.shards_skipped} already done, "
            f"{len(self.failed)} failed; {self.rows} rows, {self.row_errors} row errors; "
            f"shard retries: {retries or 'none'}; {rate_text(rate)} images/s over "
            f"{self.seconds:.1f}s (start-up included)"
        )


class _Job:
    """One run's state: the output, the fingerprint, progress and the summary."""

    def __init__(
        self,
        config: JobConfig,
        ledger: Ledger,
        lease: OutputLease,
        fingerprint: str,
        summary: RunSummary,
        progress: Progress,
        stop: StopRequest,
        shards: list[Shard],
    ):
        self.config = config
        self.stop = stop
        self.ledger = ledger
        self.lease = lease
        self.fingerprint = fingerprint
        self.summary = summary
        self.earlier_failures = {failure.shard for failure in ledger.failures()}
        self.progress = progress
        # A shard still incomplete this long after its first row is named in progress lines.
        self.slow_after_s = config.retry.shard_timeout_s / 4
        self.output_columns = output_columns(config, reads_pdf(shards))
        self.shards = {shard.id: shard for shard in shards}
        self.input_fs, _ = open_filesystem(config.input.uri, config.storage)
        self.commits = CommitQueue(self.commit)
        self.counts = CountsLog(ledger.fs, ledger.root, summary.run_id)

    def commit(self, shard_id: str, rows: list[dict]) -> tuple[int, int]:
        """Write one shard (in a commit thread): (rows, row errors) written."""
        self.lease.check()
        errors = [
            (row["key"], row["error_class"], row["error"])
            for row in rows
            if row["error"] is not None
        ]
        if errors:  # before the commit: a record of a shard not committed is ignored
            self.ledger.record_row_errors(shard_id, errors)
        shard = self.shards[shard_id]
        inputs = None  # a shard made elsewhere than by discovery has no stamps to record
        if shard.stamps:
            inputs = shard_stamps(self.input_fs, shard.paths, shard.stamps, shard.root)
        table = commit_shard(
            self.ledger.fs,
            self.ledger.root,
            shard_id,
            rows,
            self.fingerprint,
            self.output_columns,
            inputs,
        )
        self.summary.mark("first_commit")  # here, not when counted: the file exists now
        if shard_id in self.earlier_failures:
            self.ledger.clear_failure(shard_id)
        return table.num_rows, len(errors)

    def _settle(self, assembler: ShardAssembler, everything: bool = False) -> None:
        """Count the commits that finished; a shard whose commit failed is retried."""
        for shard_id, future in self.commits.done(everything):
            try:
                rows, errors = future.result()
            except OSError as error:
                message = f"commit failed: {type(error).__name__}: {error}"
                assembler.fail(shard_id, Failure(FailureClass.STORAGE, message, retryable=True))
                continue
            self.summary.shards_committed += 1
            self.summary.rows += rows
            self.summary.row_errors += errors
            self.counts.add(shard_id, rows, errors)
            self.progress.shard_committed(rows)

    def run_pass(self, shards: list[Shard], resources: ActorResources) -> dict[str, Failure]:
        """Stream every shard once through the plan; commit each as it completes.

        Ray Data cancels the pass when nothing progresses for `retry.shard_timeout_s`
        (its no-progress guard), so a hung read, store or model cannot stall the run.
        """
        assembler = ShardAssembler({shard.id for shard in shards})
        timeout_s = self.config.retry.shard_timeout_s
        dataset = build_plan(shards, self.config, resources)
        dataset.context.execution_no_progress_timeout_s = timeout_s
        # A block Ray could not process (its actor or worker died) does not end the pass:
        # its shard's rows are then missing at the end, and the shard is retried.
        dataset.context.max_errored_blocks = -1
        self.stop.in_flight = lambda: set(assembler.first_row_at) | self.commits.shards()
        # Closed on the way out, whatever stops the loop: Ray Data's executor threads are
        # then gone before Ray is (a thread of it touching a stopped Ray exits the process).
        batches = iter(
            dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0)
        )
        try:
            for batch in batches:
                self.summary.mark("first_result")
                for row in batch.to_pylist():
                    if row["engine_stats"] is not None:
                        self.summary.engine.add(row.pop("engine_stats"))
                    if row["actor_startup"] is not None:
                        self.summary.mark_actor(row.pop("actor_startup"))
                    rows = assembler.add(row)
                    if rows is not None:
                        self.commits.submit(row["shard"], rows)
                    failure = assembler.failed.get(row["shard"])
                    if failure is not None and failure.kind is FailureClass.MODEL_LOAD:
                        raise ModelLoadError(failure.message)
                self._settle(assembler)
                self.progress.tick(lambda: assembler.slow_shards(self.slow_after_s))
                self.stop.check(assembler.waiting)
        except (OutputBusyError, ModelLoadError):
            raise
        except ExecutionTimeoutError:
            log.warning("no progress for %.0fs: cancelling the pass", timeout_s)
            assembler.fail_unfinished(FailureClass.TIMEOUT, f"no progress for {timeout_s:.0f}s")
        except Exception as error:  # Ray aborted the pass; shards not committed are retried
            log.warning("pass aborted: %s: %s", type(error).__name__, error)
            assembler.fail_unfinished(FailureClass.LOST, f"pass aborted by {type(error).__name__}")
        finally:
            self.stop.in_flight = set
            batches.close()
            self._settle(assembler, everything=True)  # a stop too: what was assembled lands
        assembler.fail_unfinished(FailureClass.LOST, "rows missing at the end of the pass")
        return assembler.failed


def _backoff(config: JobConfig, attempt: int) -> float:
    return min(config.retry.backoff_s * 2 ** (attempt - 1), config.retry.backoff_max_s)


@dataclass(frozen=True)
class ShardSelection:
    """Which of the shards not yet committed a run takes."""

    retry_failed: bool = False  # only those the ledger records as failed
    max_shards: int | None = None  # at most this many, in shard order; the rest wait

    def pick(self, pending: list[Shard], ledger: Ledger) -> list[Shard]:
        if self.retry_failed:
            failed = {failure.shard for failure in ledger.failures()}
            pending = [shard for shard in pending if shard.id in failed]
        return pending[: self.max_shards]


def run_job(
    config: JobConfig,
    retry_failed: bool = False,
    max_shards: int | None = None,
    verbose: bool = False,
) -> RunSummary:
    """Run the job to the end. Shards that fail after their retries are recorded in the
    ledger and named in the summary; the others are committed. With `retry_failed`, only
    the shards the ledger records as failed are processed; with `max_shards`, at most that
    many (a trial run). SIGINT or SIGTERM stop it cleanly with RunInterrupted
    (`pipeline.run.interrupts`; SIGTERM after the shards in flight, within
    `output.shutdown_grace_s`). `verbose`: Ray's own notes too."""
    summary = RunSummary(config.output.uri)
    with stop_on_signals(config.output.shutdown_grace_s) as stop:
        try:
            _run(config, ShardSelection(retry_failed, max_shards), summary, stop, verbose)
        except Stop as stopped:
            committed, pending = summary.shards_committed, summary.shards_new
            raise RunInterrupted(stopped.signum, committed, pending) from None
    return summary


def _run(
    config: JobConfig,
    selection: ShardSelection,
    summary: RunSummary,
    stop: StopRequest,
    verbose: bool,
) -> None:
    start = time.monotonic()
    with ThreadPoolExecutor(2, thread_name_prefix="start-up") as starting:
        # The check imports transformers and torch (seconds): it runs while the shards are
        # listed and Ray starts. Nothing is written to the output before it passes.
        checked = starting.submit(_check_model, config.model)
        input_fs, input_root = open_filesystem(config.input.uri, config.storage)
        output_fs, output_root = open_filesystem(config.output.uri, config.storage)
        same_store = type(input_fs) is type(output_fs)
        shards = discover_shards(
            input_fs, input_root, config.input, exclude=output_root if same_store else None
        )
        ledger = Ledger(output_fs, output_root)
        with storage_access(config.output.uri):
            waiting, _ = split_committed(shards, output_fs, output_root)
        prepared = None
        if config.output.overwrite or selection.pick(waiting, ledger):  # Ray is needed
            connect_ray(config.compute.ray_address, verbose=verbose)
            summary.mark("ray_started")
            prepared = starting.submit(prepare_ray_data)  # while the model is checked
        identity = checked.result()
        summary.mark("model_checked")
        if prepared is not None:
            prepared.result()
    lease = OutputLease(output_fs, output_root, config.output.lease_ttl_s)
    with storage_access(config.output.uri):
        lease.acquire()
    try:
        fingerprint = ledger.start_run(
            run_settings(config, identity, reads_pdf(shards)),
            absolute_url(config.input.uri),
            len(shards),
            config.output.overwrite,
        )
        ledger.record_run(summary.record(finished=False))
        try:
            _run_shards(
                config, ledger, lease, fingerprint, summary, stop, shards, selection, verbose
            )
        finally:
            summary.seconds = time.monotonic() - start
            ledger.record_run(summary.record(finished=True))
    finally:
        lease.release()


def reads_pdf(shards: list[Shard]) -> bool:
    """Whether the run reads PDFs (its shards are all of one format)."""
    return bool(shards) and shards[0].format == "pdf"


def _check_model(settings: ModelSettings) -> str:
    from model.checking import check_model  # transformers, torch: in the thread, not before

    return check_model(settings)


def _run_shards(
    config: JobConfig,
    ledger: Ledger,
    lease: OutputLease,
    fingerprint: str,
    summary: RunSummary,
    stop: StopRequest,
    shards: list[Shard],
    selection: ShardSelection,
    verbose: bool,
) -> None:
    pending, summary.shards_skipped = split_committed(shards, lease.fs, lease.root)
    pending = selection.pick(pending, ledger)
    summary.shards_total, summary.shards_new = len(shards), len(pending)
    log.info(
        "%d shards under %s, %d already committed",
        len(shards),
        config.input.uri,
        summary.shards_skipped,
    )
    if not pending:
        what = "no failed shards to retry" if selection.retry_failed else "nothing new to process"
        log.info("%s: every shard under %s is committed", what, config.input.uri)
        return
    progress = Progress(len(pending), config.progress.log_interval_s)
    job = _Job(config, ledger, lease, fingerprint, summary, progress, stop, shards)
    try:
        _run_with_retries(job, pending, actor_resources(config.compute))
    finally:
        job.counts.flush()


def _run_with_retries(job: _Job, pending: list[Shard], resources: ActorResources) -> None:
    config = job.config
    attempts: Counter[str] = Counter()
    try:
        while pending:
            job.stop.check(set())  # a stop asked for between passes
            failures = job.run_pass(pending, resources)
            retry = []
            for shard in pending:
                if shard.id not in failures:
                    continue
                attempts[shard.id] += 1
                failure = failures[shard.id]
                if failure.retryable and attempts[shard.id] < config.retry.max_attempts:
                    retry.append(shard)
                    job.summary.retries[failure.kind.value] += 1
                    continue
                log.error(
                    "shard %s failed after %d attempt(s): %s",
                    shard.id,
                    attempts[shard.id],
                    failure,
                )
                job.ledger.record_failure(shard.id, failure, attempts[shard.id])
                job.summary.failed[shard.id] = str(failure)
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
        job.commits.close()
        job.progress.close()
