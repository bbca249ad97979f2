"""End to end on local disk with real Ray: every format, parity with model.generate,
exact row counts, resume, fingerprint checks, row and shard errors."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model import ModelLoadError
from model.architectures import Encoder
from pipeline.exceptions import OutputConflictError
from pipeline.output.status import output_status
from pipeline.run.runner import run_job
from pipeline.training.build import build_model
from tests.conftest import job_config
from tests.support.data import (
    sample_images,
    text_image,
    webdataset_members,
    write_image_folder,
    write_parquet,
    write_tar,
)
from tests.support.reference import Reference

pytestmark = pytest.mark.usefixtures("ray_cluster")


def read_output(path) -> dict[str, dict]:
    table = pq.read_table(path)
    return {row["key"]: row for row in table.to_pylist()}


@pytest.fixture(scope="module")
def webdataset_input(tmp_path_factory):
    root = tmp_path_factory.mktemp("wds")
    first, second = sample_images(5), sample_images(3, offset=5)
    members = webdataset_members(first)
    members["broken.jpg"] = b"this is text, not a jpeg"
    write_tar(root / "train" / "a.tar", members)
    write_tar(root / "train" / "b.tar", webdataset_members(second))
    write_tar(root / "empty.tar", {})
    return root, {"train/a": first, "train/b": second, "empty": {}}


def test_webdataset_greedy_output_equals_generate_per_image(
    webdataset_input, tiny_model, reference, tmp_path
):
    root, shards = webdataset_input
    summary = run_job(job_config(root, tmp_path / "out", tiny_model))
    assert (summary.exit_code, summary.shards_committed, summary.failed) == (0, 3, {})
    assert (summary.rows, summary.row_errors) == (9, 1)
    for shard_id, images in shards.items():
        table = pq.read_table(tmp_path / "out" / f"{shard_id}.parquet")
        rows = {row["key"]: row for row in table.to_pylist()}
        expected_keys = set(images) | ({"broken"} if shard_id == "train/a" else set())
        assert set(rows) == expected_keys and table.num_rows == len(expected_keys)
        for key, data in images.items():
            assert rows[key]["text"] == reference.text(data, max_new_tokens=12), key
            assert rows[key]["error"] is None
            assert rows[key]["shard"] == shard_id
            assert rows[key]["txt"] == f"text of {key}"
    broken = read_output(tmp_path / "out" / "train" / "a.parquet")["broken"]
    assert (
        broken["text"] is None
        and broken["error"] == "decode: cannot decode image: not a recognised image format"
    )


def test_parquet_beam_search_equals_generate_and_keeps_columns(tiny_model, reference, tmp_path):
    images = sample_images(6)
    keys = list(images)
    write_parquet(tmp_path / "in" / "p0.parquet", dict(list(images.items())[:4]))
    write_parquet(tmp_path / "in" / "p1.parquet", dict(list(images.items())[4:]))
    config = job_config(
        tmp_path / "in",
        tmp_path / "out",
        tiny_model,
        input={"key_column": "id"},
        generation={"num_beams": 3},
    )
    assert run_job(config).exit_code == 0
    table = pa.concat_tables([pq.read_table(tmp_path / "out" / f"p{i}.parquet") for i in range(2)])
    assert table.column_names == ["shard", "key", "text", "error", "id", "label", "tags"]
    assert table.column("key").to_pylist() == keys
    assert table.column("label").to_pylist() == [0, 1, 2, 3, 0, 1]
    assert table.schema.field("label").type == pa.int32()
    assert table.column("tags").to_pylist()[0] == [keys[0], "x"]
    for row in table.to_pylist():
        assert row["text"] == reference.text(images[row["key"]], max_new_tokens=12, num_beams=3)


def test_image_folder_with_gpt2_decoder(tiny_gpt2_model, tmp_path):
    images = {f"dir/{k}": v for k, v in sample_images(5).items()}
    write_image_folder(tmp_path / "in", images)
    config = job_config(
        tmp_path / "in", tmp_path / "out", tiny_gpt2_model, input={"images_per_shard": 2}
    )
    summary = run_job(config)
    assert (summary.exit_code, summary.shards_committed, summary.rows) == (0, 3, 5)
    gpt2 = Reference(tiny_gpt2_model)
    rows = {}
    for part in range(3):
        rows |= read_output(tmp_path / "out" / "dir" / f"part-{part:05d}.parquet")
    assert set(rows) == {f"{key}.png" for key in images}
    for key, data in images.items():
        assert rows[f"{key}.png"]["text"] == gpt2.text(data, max_new_tokens=12)


def test_rerun_skips_committed_shards_and_redoes_only_missing_ones(
    webdataset_input, tiny_model, tmp_path
):
    root, _ = webdataset_input
    config = job_config(root, tmp_path / "out", tiny_model)
    run_job(config)
    outputs = sorted((tmp_path / "out").rglob("*.parquet"))
    stamps = {path: path.stat().st_mtime_ns for path in outputs}
    again = run_job(config)
    assert (again.shards_skipped, again.shards_committed, again.rows) == (3, 0, 0)
    assert {path: path.stat().st_mtime_ns for path in outputs} == stamps
    (tmp_path / "out" / "train" / "b.parquet").unlink()
    third = run_job(config)
    assert (third.shards_skipped, third.shards_committed, third.rows) == (2, 1, 3)
    assert stamps[tmp_path / "out" / "train" / "a.parquet"] == (
        (tmp_path / "out" / "train" / "a.parquet").stat().st_mtime_ns
    )


def test_other_settings_are_refused_unless_overwrite(webdataset_input, tiny_model, tmp_path):
    root, _ = webdataset_input
    run_job(job_config(root, tmp_path / "out", tiny_model))
    before = pq.read_schema(tmp_path / "out" / "empty.parquet").metadata
    beam = job_config(root, tmp_path / "out", tiny_model, generation={"num_beams": 2})
    with pytest.raises(OutputConflictError, match=r"generation\.num_beams: None -> 2.*--overwrite"):
        run_job(beam)
    overwrite = job_config(
        root, tmp_path / "out", tiny_model, generation={"num_beams": 2}, output={"overwrite": True}
    )
    summary = run_job(overwrite)
    assert (summary.shards_skipped, summary.shards_committed) == (0, 3)
    after = pq.read_schema(tmp_path / "out" / "empty.parquet").metadata
    assert before[b"shardscribe.fingerprint"] != after[b"shardscribe.fingerprint"]
    # Settings that do not change outputs resume normally.
    resumed = run_job(
        job_config(
            root,
            tmp_path / "out",
            tiny_model,
            generation={"num_beams": 2},
            compute={"batch_size": 3},
        )
    )
    assert resumed.shards_skipped == 3


def test_overwrite_with_unchanged_settings_redoes_every_shard(tiny_model, tmp_path):
    write_tar(tmp_path / "in" / "a.tar", webdataset_members(sample_images(2)))
    run_job(job_config(tmp_path / "in", tmp_path / "out", tiny_model))
    (tmp_path / "out" / "a.parquet").write_bytes(b"stale")  # must not survive an overwrite
    again = run_job(
        job_config(tmp_path / "in", tmp_path / "out", tiny_model, output={"overwrite": True})
    )
    assert (again.shards_skipped, again.shards_committed) == (0, 1)
    assert pq.read_table(tmp_path / "out" / "a.parquet").num_rows == 2


def test_max_shards_takes_that_many_and_leaves_the_rest_for_the_next_run(tiny_model, tmp_path):
    for name in ("a", "b", "c"):
        write_tar(tmp_path / "in" / f"{name}.tar", webdataset_members(sample_images(1)))
    config = job_config(tmp_path / "in", tmp_path / "out", tiny_model)
    trial = run_job(config, max_shards=2)
    assert (trial.shards_new, trial.shards_committed, trial.exit_code) == (2, 2, 0)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.parquet")) == [
        "a.parquet",
        "b.parquet",
    ]
    rest = run_job(config)
    assert (rest.shards_skipped, rest.shards_committed) == (2, 1)


def test_a_relative_input_is_recorded_as_an_absolute_path(tiny_model, tmp_path, monkeypatch):
    write_tar(tmp_path / "in" / "a.tar", webdataset_members(sample_images(1)))
    monkeypatch.chdir(tmp_path)
    run_job(job_config("in", tmp_path / "out", tiny_model))
    recorded = json.loads((tmp_path / "out" / "_shardscribe" / "run.json").read_text())
    assert recorded["input"] == str(tmp_path / "in")


def test_truncated_shard_fails_alone_and_is_reported(tiny_model, tmp_path):
    write_tar(tmp_path / "in" / "good.tar", webdataset_members(sample_images(2)))
    bad = write_tar(tmp_path / "in" / "bad.tar", webdataset_members(sample_images(4)))
    bad.write_bytes(bad.read_bytes()[:2000])
    summary = run_job(job_config(tmp_path / "in", tmp_path / "out", tiny_model))
    assert summary.exit_code == 1
    assert list(summary.failed) == ["bad"]
    assert "input: corrupt or truncated tar" in summary.failed["bad"]
    assert (tmp_path / "out" / "good.parquet").exists()
    assert not (tmp_path / "out" / "bad.parquet").exists()
    status = output_status(str(tmp_path / "out"), job_config("i", "o", "m").storage)
    assert {
        k: status[k] for k in ("shards_total", "shards_done", "shards_failed", "rows", "row_errors")
    } == {
        "shards_total": 2,
        "shards_done": 1,
        "shards_failed": 1,
        "rows": 2,
        "row_errors": 0,
    }
    assert status["failed"][0]["shard"] == "bad" and status["failed"][0]["attempts"] == 1


def test_many_one_image_shards_packed_into_tasks_each_commit_exactly_once(tiny_model, tmp_path):
    """Small shards share read tasks and blocks (`plan.pack_shards`), yet each is still
    committed, failed and counted on its own: one truncated shard among them fails alone."""
    images = sample_images(150)
    for key, image in images.items():
        write_tar(tmp_path / "in" / f"{key}.tar", webdataset_members({key: image}))
    bad = tmp_path / "in" / "s0070.tar"
    bad.write_bytes(bad.read_bytes()[:700])
    summary = run_job(job_config(tmp_path / "in", tmp_path / "out", tiny_model))
    assert (summary.shards_committed, summary.rows, summary.row_errors) == (149, 149, 0)
    assert list(summary.failed) == ["s0070"]
    table = pq.read_table(tmp_path / "out").to_pylist()
    assert sorted((row["shard"], row["key"]) for row in table) == [
        (key, key) for key in sorted(images) if key != "s0070"
    ]
    assert all(row["text"] and row["error"] is None for row in table)


def test_sampling_reproduces_across_runs_and_batch_sizes(webdataset_input, tiny_model, tmp_path):
    root, _ = webdataset_input
    sample = {"do_sample": True, "seed": 5}
    run_job(job_config(root, tmp_path / "a", tiny_model, generation=sample))
    run_job(
        job_config(root, tmp_path / "b", tiny_model, generation=sample, compute={"batch_size": 1})
    )
    first = read_output(tmp_path / "a" / "train" / "a.parquet")
    assert first == read_output(tmp_path / "b" / "train" / "a.parquet")
    assert len({row["text"] for row in first.values()}) > 1


def test_retry_failed_redoes_only_failed_shards_and_leaves_the_rest_untouched(tiny_model, tmp_path):
    write_tar(tmp_path / "in" / "good.tar", webdataset_members(sample_images(2)))
    bad = write_tar(tmp_path / "in" / "bad.tar", webdataset_members(sample_images(3, offset=2)))
    bad.write_bytes(bad.read_bytes()[:1500])
    config = job_config(tmp_path / "in", tmp_path / "out", tiny_model)
    assert run_job(config).failed.keys() == {"bad"}
    good_bytes = (tmp_path / "out" / "good.parquet").read_bytes()
    write_tar(bad, webdataset_members(sample_images(3, offset=2)))  # the shard is repaired
    write_tar(tmp_path / "in" / "new.tar", webdataset_members(sample_images(1, offset=9)))
    summary = run_job(config, retry_failed=True)
    assert (summary.exit_code, summary.shards_committed, summary.rows) == (0, 1, 3)
    assert (tmp_path / "out" / "good.parquet").read_bytes() == good_bytes
    assert not (tmp_path / "out" / "new.parquet").exists()  # new shards wait for a plain run
    status = output_status(str(tmp_path / "out"), config.storage)
    assert (status["shards_done"], status["shards_failed"], status["failed"]) == (2, 0, [])


def test_a_line_too_wide_for_a_padding_model_is_a_row_error(tmp_path):
    """A model whose processor keeps the aspect ratio (32x128: lines up to 8:1) reads a
    6:1 line and refuses a 10:1 one by name; the shard still commits."""
    model = tmp_path / "model"
    parts = build_model(encoder="vit-line-tiny", decoder="trocr-char-tiny")
    parts.model.save_pretrained(model)
    parts.tokenizer.save_pretrained(model)
    Encoder(32, 1, 2, (32, 128), keep_aspect=True).image_processor().save_pretrained(model)
    images = {"fits": text_image("ok", 120, 20), "too-wide": text_image("long", 200, 20)}
    write_tar(tmp_path / "in" / "lines.tar", webdataset_members(images))
    summary = run_job(job_config(tmp_path / "in", tmp_path / "out", str(model)))
    assert (summary.exit_code, summary.rows, summary.row_errors) == (0, 2, 1)
    rows = read_output(tmp_path / "out" / "lines.parquet")
    assert rows["fits"]["error"] is None and rows["fits"]["text"] is not None
    assert rows["too-wide"]["text"] is None
    assert rows["too-wide"]["error"] == (
        "decode: line image too wide for the model: 200x20 px (10:1); it reads lines up to "
        "8:1 (width:height); cut the line into pieces"
    )


def test_weights_that_fail_to_load_in_the_actor_stop_the_run_with_a_model_error(
    tiny_model, tmp_path
):
    """Config, processor and tokenizer load on the driver; the weights fail only inside
    the generation actor. The run raises ModelLoadError (exit 2) naming the model."""
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    write_tar(tmp_path / "in" / "a.tar", webdataset_members(sample_images(2)))
    with pytest.raises(ModelLoadError, match=r"cannot load the weights of model '.*broken-model'"):
        run_job(job_config(tmp_path / "in", tmp_path / "out", str(broken)))
