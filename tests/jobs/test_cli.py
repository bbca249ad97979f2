"""The `shardscribe` command as users run it: a subprocess, its exit code and messages."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.support.cli import shardscribe
from tests.support.data import sample_images, webdataset_members, write_tar

OWN_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) ")
# Ray Data makes every actor pool print this from Ray's C++ core, which no setting
# silences without printing a line per process instead: ray-project/ray#57733.
RAY_57733 = re.compile(
    r"^\[.* core_worker\.cc:\d+: Actor with class name: 'MapWorker\(MapBatches\("
    r"GenerationStage\)\)' and ID: '\w+' has constructor arguments in the object store"
)


def own_lines(stderr: str) -> list[str]:
    """stderr's lines less Ray's known one; each must be shardscribe's."""
    lines = [line for line in stderr.splitlines() if not RAY_57733.match(line)]
    assert all(OWN_LINE.match(line) for line in lines), stderr
    return lines


def test_config_typo_exits_2_naming_the_field(tmp_path, tiny_model):
    config = tmp_path / "job.yaml"
    config.write_text(f"model: {{name: {tiny_model}}}\ngeneration: {{num_beam: 2}}\n")
    result = shardscribe("run", "--config", str(config), "--input", "x", "--output", "y")
    assert result.returncode == 2
    assert (
        "generation.num_beam: Extra inputs are not permitted; did you mean generation.num_beams?"
        in result.stderr
    )


def test_a_flag_prefix_is_not_expanded_and_a_close_flag_is_named(tiny_model):
    result = shardscribe(
        "run", "--input", "x", "--output", "y", "--model", tiny_model, "--num-beam", "4"
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "shardscribe run: error: unrecognized arguments: --num-beam 4; did you mean --num-beams?"
    )


def test_bare_command_prints_the_help_and_version_prints_the_version():
    bare = shardscribe()
    assert bare.returncode == 0 and bare.stdout.startswith("usage: shardscribe")
    assert "{run,status" not in bare.stdout and "COMMAND" in bare.stdout
    version = shardscribe("--version")
    assert (version.returncode, version.stdout) == (0, "shardscribe 0.1.0\n")


def test_status_of_a_path_that_is_no_output_exits_2(tmp_path):
    for command in (["status"], ["status", "--failures"], ["status", "--runs"]):
        result = shardscribe(*command, str(tmp_path / "nothing-here"))
        assert result.returncode == 2, result.stdout
        assert (
            f"output {tmp_path / 'nothing-here'} holds no committed shards: not a shardscribe "
            "output, or no shard has finished yet" in result.stderr
        )


def test_bad_flag_value_exits_2_naming_it(tmp_path, tiny_model):
    result = shardscribe(
        "run", "--input", "x", "--output", "y", "--model", tiny_model, "--batch-size", "lots"
    )
    assert result.returncode == 2
    assert (
        "compute.batch_size: should be a positive integer or 'auto' (got 'lots')" in result.stderr
    )


def test_missing_input_exits_2(tmp_path, tiny_model):
    result = shardscribe(
        "run",
        "--input",
        str(tmp_path / "nope"),
        "--output",
        str(tmp_path / "out"),
        "--model",
        tiny_model,
    )
    assert result.returncode == 2
    assert f"input {tmp_path / 'nope'} does not exist or is empty" in result.stderr


def test_unloadable_model_exits_2_before_any_work(tmp_path):
    write_tar(tmp_path / "in" / "a.tar", webdataset_members(sample_images(1)))
    result = shardscribe(
        "run",
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "out"),
        "--model",
        str(tmp_path / "no-model"),
    )
    assert result.returncode == 2
    assert "cannot load the config of model" in result.stderr
    assert not (tmp_path / "out").exists()


def test_run_then_status_json(tmp_path, tiny_model):
    write_tar(tmp_path / "in" / "a.tar", webdataset_members(sample_images(3)))
    write_tar(tmp_path / "in" / "b.tar", webdataset_members(sample_images(2, offset=3)))
    out = str(tmp_path / "out")
    result = shardscribe(
        "run",
        "--input",
        str(tmp_path / "in"),
        "--output",
        out,
        "--model",
        tiny_model,
        "--max-new-tokens",
        "8",
        "--batch-size",
        "2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 shards committed, 0 already done, 0 failed; 5 rows, 0 row errors" in result.stderr
    assert "\x1b[" not in result.stderr  # no progress-bar or colour escape codes in logs
    own_lines(result.stderr)  # no Ray or transformers notes between shardscribe's lines
    status = shardscribe("status", out, "--json")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert {
        k: report[k] for k in ("shards_total", "shards_done", "shards_failed", "rows", "row_errors")
    } == {"shards_total": 2, "shards_done": 2, "shards_failed": 0, "rows": 5, "row_errors": 0}
    human = shardscribe("status", out)
    assert "2/2 committed, 0 failed, 0 pending" in human.stdout


def test_quiet_shows_only_the_summary_and_verbose_shows_rays_notes(tmp_path, tiny_model):
    write_tar(tmp_path / "in" / "a.tar", webdataset_members(sample_images(2)))
    flags = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    flags += ["--model", tiny_model, "--max-new-tokens", "4", "--overwrite"]
    quiet = shardscribe("run", *flags, "--quiet")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    (line,) = own_lines(quiet.stderr)
    assert " INFO done: 1 shards committed, 0 already done, 0 failed; 2 rows" in line
    verbose = shardscribe("run", *flags, "-v")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "Started a local Ray instance" in verbose.stderr
    assert not all(OWN_LINE.match(line) for line in verbose.stderr.splitlines())


def test_job_module_runs_with_its_preset_and_flags():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.caption",
            "--input",
            "x",
            "--output",
            "y",
            "--max-new-tokens",
            "lots",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "generation.max_new_tokens: Input should be a valid integer" in result.stderr


def test_help_and_status_do_not_import_torch_or_transformers(tmp_path):
    """What makes `--help` and `status` answer in well under a second: neither imports the
    model stack (it costs about 6 s on 2 cores)."""
    probe = (
        "import sys\n"
        "from jobs.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('heavy:', sorted({'torch', 'transformers', 'ray'} & set(sys.modules)))\n"
    )
    for args in (["--help"], ["run", "--help"], ["status", str(tmp_path / "out")]):
        result = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60
        )
        assert result.stdout.splitlines()[-1] == "heavy: []", (args, result.stdout[-500:])


def test_the_driver_starts_without_torch_or_transformers():
    """The runner and the plan (which names the generation stage) import neither: the
    model check imports them in a thread while Ray starts, the actor for itself."""
    probe = (
        "import sys\n"
        "import pipeline.run.runner, pipeline.run.plan, pipeline.run.stages\n"
        "print('heavy:', sorted({'torch', 'transformers'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.splitlines()[-1] == "heavy: []", result.stderr[-2000:]
