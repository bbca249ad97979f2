"""`shardscribe status`: what an output holds, read from its files and its ledger."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline.job_config import StorageSettings
from pipeline.output.counts import read_counts
from pipeline.output.ledger import Ledger
from pipeline.output.listing import committed_files, footer_counts, not_an_output
from pipeline.storage import open_filesystem, storage_access


def _open_output(uri: str, storage: StorageSettings):
    """(filesystem, root, ledger, run record, committed files); InputError when the path
    holds neither a run record nor a committed shard."""
    fs, root = open_filesystem(uri, storage)
    ledger = Ledger(fs, root)
    with storage_access(uri):
        run = ledger.read_run()
        files = committed_files(fs, root) if fs.exists(root) else {}
    if run is None and not files:
        raise not_an_output(uri)
    return fs, root, ledger, run, files


def output_status(uri: str, storage: StorageSettings) -> dict[str, Any]:
    """Shards total / committed / failed, rows and row errors, and each failed shard."""
    fs, root, ledger, run, files = _open_output(uri, storage)
    with storage_access(uri):
        indexed = read_counts(fs, root)
    counts = [indexed[shard] for shard in files if shard in indexed]
    unindexed = [path for shard, path in files.items() if shard not in indexed]
    with ThreadPoolExecutor(max_workers=16) as pool:  # a GET each on an object store
        counts += pool.map(lambda path: footer_counts(fs, path), unindexed)
    failures = [f for f in ledger.failures() if f.shard not in files]
    total = max(run["shards_total"] if run else 0, len(files) + len(failures))
    return {
        "output": uri,
        "fingerprint": run["fingerprint"] if run else None,
        "input": run["input"] if run else None,
        "shards_total": total,
        "shards_done": len(files),
        "shards_failed": len(failures),
        "shards_pending": total - len(files) - len(failures),
        "rows": sum(rows for rows, _ in counts),
        "row_errors": sum(errors for _, errors in counts),
        "failed": [
            {
                "shard": f.shard,
                "error_class": f.error_class,
                "error": f.error,
                "attempts": f.attempts,
            }
            for f in failures
        ],
    }


def failure_records(uri: str, storage: StorageSettings) -> list[dict[str, Any]]:
    """Every failed shard and every row error of a committed shard, one record each:
    kind (shard or row), shard, key, error_class, error, attempts."""
    _, _, ledger, _, committed = _open_output(uri, storage)
    shards = [
        {
            "kind": "shard",
            "shard": f.shard,
            "key": None,
            "error_class": f.error_class,
            "error": f.error,
            "attempts": f.attempts,
        }
        for f in ledger.failures()
        if f.shard not in committed
    ]
    rows = [{"kind": "row", **r} for r in ledger.row_errors() if r["shard"] in committed]
    return shards + rows


def format_failures(records: list[dict[str, Any]]) -> str:
    """One aligned line per record; each column as wide as its longest value."""
    if not records:
        return "no failures"
    columns = ("kind", "class", "attempts", "shard", "key")
    rows = [
        (r["kind"], r["error_class"], str(r["attempts"]), r["shard"], r["key"] or "-", r["error"])
        for r in records
    ]
    widths = [max(len(name), *(len(row[i]) for row in rows)) for i, name in enumerate(columns)]
    lines = []
    for row in [(*columns, "error"), *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def format_status(status: dict[str, Any]) -> str:
    lines = [
        f"output        {status['output']}",
        f"input         {status['input'] or '-'}",
        f"shards        {status['shards_done']}/{status['shards_total']} committed, "
        f"{status['shards_failed']} failed, {status['shards_pending']} pending",
        f"rows          {status['rows']} ({status['row_errors']} with errors)",
    ]
    for failure in status["failed"]:
        lines.append(
            f"failed shard  {failure['shard']} after {failure['attempts']} attempt(s): "
            f"{failure['error']}"
        )
    return "\n".join(lines)


def run_history(uri: str, storage: StorageSettings) -> list[dict[str, Any]]:
    """Every run recorded in the output's ledger, oldest first."""
    _, _, ledger, _, _ = _open_output(uri, storage)
    return ledger.runs()


def _utc(timestamp: float | None) -> str:
    if timestamp is None:
        return "unfinished"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def format_runs(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "no runs recorded"
    header = (
        f"{'run':24}  {'started (UTC)':19}  {'ended (UTC)':19}  {'new':>5}  {'committed':>9}  "
        f"{'failed':>6}  {'rows':>8}  {'errors':>6}  {'images/s':>8}"
    )
    lines = [header]
    for r in runs:
        lines.append(
            f"{r['run']:24}  {_utc(r['started']):19}  {_utc(r['ended']):19}  "
            f"{r['shards_new']:>5}  {r['shards_committed']:>9}  {r['shards_failed']:>6}  "
            f"{r['rows']:>8}  {r['row_errors']:>6}  {r['images_per_s']:>8.1f}"
        )
    return "\n".join(lines)
