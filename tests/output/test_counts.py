"""`status` reads committed shards' row counts from the run's index files, and from the
shards' footers where the index does not cover them."""

from __future__ import annotations

import shutil

import fsspec
import pytest

from pipeline.output import counts
from pipeline.output.counts import CountsLog, read_counts
from pipeline.output.status import output_status
from pipeline.run.runner import run_job
from tests.conftest import job_config
from tests.support.data import sample_images, webdataset_members, write_tar

fs = fsspec.filesystem("file")
FIGURES = ("shards_total", "shards_done", "shards_failed", "rows", "row_errors")


def _figures(output) -> dict:
    status = output_status(str(output), job_config("i", "o", "m").storage)
    return {name: status[name] for name in FIGURES}


@pytest.mark.usefixtures("ray_cluster")
def test_status_from_the_index_equals_status_from_every_footer(tiny_model, tmp_path):
    write_tar(tmp_path / "in" / "a.tar", webdataset_members(sample_images(3)))
    broken = webdataset_members(sample_images(2, offset=3)) | {"x.jpg": b"not a jpeg"}
    write_tar(tmp_path / "in" / "b.tar", broken)
    write_tar(tmp_path / "in" / "c.tar", webdataset_members(sample_images(1, offset=5)))
    run_job(job_config(tmp_path / "in", tmp_path / "out", tiny_model))
    expected = {"shards_total": 3, "shards_done": 3, "shards_failed": 0, "rows": 7}
    assert read_counts(fs, str(tmp_path / "out")) == {"a": (3, 0), "b": (3, 1), "c": (1, 0)}
    assert _figures(tmp_path / "out") == expected | {"row_errors": 1}

    shutil.rmtree(tmp_path / "out" / "_shardscribe" / "counts")  # a run killed before it wrote
    assert _figures(tmp_path / "out") == expected | {"row_errors": 1}

    (tmp_path / "out" / "a.parquet").unlink()  # deleted by hand: not counted, and redone once
    assert _figures(tmp_path / "out")["rows"] == 4
    run_job(job_config(tmp_path / "in", tmp_path / "out", tiny_model))
    assert _figures(tmp_path / "out") == expected | {"row_errors": 1}


def test_counts_are_written_every_so_many_shards_and_the_latest_count_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(counts, "FLUSH_EVERY_SHARDS", 2)
    log = CountsLog(fs, str(tmp_path), "run1")
    for shard in "abc":
        log.add(shard, 10, 0)
    assert len(list((tmp_path / "_shardscribe" / "counts").iterdir())) == 1  # c still held
    log.flush()
    later = CountsLog(fs, str(tmp_path), "run2")
    later.add("a", 4, 1)
    later.flush()
    assert read_counts(fs, str(tmp_path)) == {"a": (4, 1), "b": (10, 0), "c": (10, 0)}


def test_a_store_that_refuses_the_counts_loses_no_run(tmp_path, caplog):
    (tmp_path / "_shardscribe").mkdir()
    (tmp_path / "_shardscribe" / "counts").write_text("a file where the directory goes")
    log = CountsLog(fs, str(tmp_path), "run1")
    log.add("a", 1, 0)
    log.flush()
    assert "could not write the row counts" in caplog.text
