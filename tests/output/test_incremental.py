"""Scheduled runs over a growing input: only new shards are processed, each run is kept
in the ledger's history, and the listing of committed shards is streamed in order."""

from __future__ import annotations

import json

import pytest

from pipeline.inputs.shards import Shard
from pipeline.output.listing import iter_committed, split_committed
from pipeline.run.runner import STARTUP_STEPS, run_job
from tests.conftest import job_config
from tests.support.cli import shardscribe
from tests.support.data import sample_images, webdataset_members, write_tar

# Ids that stores list in different orders (S3: a-b, a.b, a/b; SeaweedFS: a/b first).
TRICKY_IDS = ["a", "a-b", "a/b", "a.b", "a b", "b", "é", "z/é/1"]


def _shards(ids: list[str]) -> list[Shard]:
    return [Shard(id=i, format="webdataset", paths=(f"{i}.tar",), root="in") for i in ids]


def _commit_files(fs, root: str, ids: list[str]) -> None:
    fs.makedirs(f"{root}/a", exist_ok=True)  # local disk needs the directories
    fs.makedirs(f"{root}/z/é", exist_ok=True)
    fs.makedirs(f"{root}/_shardscribe", exist_ok=True)
    for shard_id in ids:
        fs.pipe_file(f"{root}/{shard_id}.parquet", b"x")
    fs.pipe_file(f"{root}/.a.parquet.0123.tmp", b"x")  # a killed run's temporary
    fs.pipe_file(f"{root}/_shardscribe/run.json", b"{}")


@pytest.mark.parametrize("store", ["local", "s3"])
def test_split_committed_finds_exactly_the_shards_without_output(store, tmp_path, request):
    if store == "local":
        import fsspec

        fs, root = fsspec.filesystem("file"), str(tmp_path / "out")
    else:
        server = request.getfixturevalue("s3")
        fs, root = server.filesystem(), "listing/out"
        server.make_bucket("listing")
    committed = ["a-b", "a/b", "é", "b"]
    _commit_files(fs, root, committed)
    assert sorted(shard_id for shard_id, _ in iter_committed(fs, root)) == sorted(committed)
    pending, done = split_committed(_shards(TRICKY_IDS), fs, root)
    assert done == len(committed)
    assert sorted(s.id for s in pending) == sorted(set(TRICKY_IDS) - set(committed))


def test_s3_listing_is_read_page_by_page(s3, monkeypatch):
    monkeypatch.setattr("pipeline.output.listing.S3_PAGE_KEYS", 2)
    fs = s3.filesystem()
    s3.make_bucket("paged")
    ids = [f"s{i:03d}" for i in range(7)]
    _commit_files(fs, "paged/out", ids)
    calls = []
    original = fs.call_s3
    monkeypatch.setattr(fs, "call_s3", lambda *a, **k: calls.append(k) or original(*a, **k))
    assert sorted(shard_id for shard_id, _ in iter_committed(fs, "paged/out")) == ids
    # 7 outputs + the ledger file + the temporary = 9 keys: 5 pages of at most 2.
    assert len(calls) == 5 and all(call["MaxKeys"] == 2 for call in calls)


@pytest.mark.usefixtures("ray_cluster")
def test_scheduled_runs_process_only_new_shards_and_keep_a_history(tiny_model, tmp_path):
    source = tmp_path / "in"
    write_tar(source / "day1" / "a.tar", webdataset_members(sample_images(3)))
    write_tar(source / "day1" / "b.tar", webdataset_members(sample_images(2, offset=3)))
    config = job_config(source, tmp_path / "out", tiny_model)

    first = run_job(config)
    committed = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*.parquet")}
    write_tar(source / "day2" / "c.tar", webdataset_members(sample_images(4, offset=5)))
    second = run_job(config)
    nothing_new = run_job(config)

    assert (first.shards_new, first.shards_committed, first.rows) == (2, 2, 5)
    assert (second.shards_skipped, second.shards_new, second.rows) == (2, 1, 4)
    assert (nothing_new.shards_skipped, nothing_new.shards_new, nothing_new.exit_code) == (3, 0, 0)
    assert {p: p.read_bytes() for p in committed} == committed  # earlier shards untouched

    listed = shardscribe("status", str(tmp_path / "out"), "--runs", "--json")
    runs = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["run"] for r in runs] == [first.run_id, second.run_id, nothing_new.run_id]
    assert [(r["shards_new"], r["shards_committed"], r["rows"]) for r in runs] == [
        (2, 2, 5),
        (1, 1, 4),
        (0, 0, 0),
    ]
    assert all(r["ended"] >= r["started"] and r["shards_total"] >= 2 for r in runs)
    assert runs[0]["images_per_s"] > 0
    assert list(runs[0]["startup_s"]) == list(STARTUP_STEPS)  # the actor's steps too
    assert list(runs[2]["startup_s"]) == ["model_checked"]  # nothing to do: no Ray, no actor
    table = shardscribe("status", str(tmp_path / "out"), "--runs").stdout.splitlines()
    assert table[0].split()[:3] == ["run", "started", "(UTC)"]
    assert [line.split()[0] for line in table[1:]] == [r["run"] for r in runs]


def test_a_run_with_nothing_new_says_so_and_starts_no_ray(tiny_model, tmp_path):
    write_tar(tmp_path / "in" / "a.tar", {})
    (tmp_path / "out").mkdir()
    args = ["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    first = shardscribe(*args, "--model", tiny_model)
    assert first.returncode == 0, first.stderr
    again = shardscribe(*args, "--model", tiny_model)
    assert again.returncode == 0, again.stderr
    assert "nothing new to process: every shard under" in again.stderr
    assert "Started a local Ray instance" not in again.stderr
    assert "0 shards committed, 1 already done" in again.stderr
