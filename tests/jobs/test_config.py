import argparse

import pytest

from jobs.cli import build_parser, load_job_config, preset_names
from jobs.flags import flag_table
from pipeline.config_loading import validate_config
from pipeline.exceptions import ConfigError
from pipeline.job_config import JobConfig

BASE = {"input": {"uri": "in"}, "output": {"uri": "out"}, "model": {"name": "m"}}


def test_typo_in_a_section_names_the_field():
    with pytest.raises(ConfigError, match=r"generation\.num_beam: Extra inputs are not permitted"):
        validate_config({**BASE, "generation": {"num_beam": 3}})


def test_bad_value_names_field_and_value():
    with pytest.raises(
        ConfigError, match=r"generation\.num_beams: .*greater than or equal to 1 \(got 0\)"
    ):
        validate_config({**BASE, "generation": {"num_beams": 0}})


def test_missing_required_field_is_named():
    with pytest.raises(ConfigError, match=r"output: Field required"):
        validate_config({"input": {"uri": "in"}})


def test_secret_value_never_appears_in_errors_or_repr():
    with pytest.raises(ConfigError) as caught:
        validate_config({**BASE, "storage": {"secret_access_key": 12345, "bogus": 1}})
    assert "12345" not in str(caught.value)
    config = validate_config({**BASE, "storage": {"secret_access_key": "TOPSECRET"}})
    assert "TOPSECRET" not in repr(config) and "TOPSECRET" not in str(config.model_dump())


def test_every_config_field_has_a_flag_and_a_description():
    table = flag_table()
    leaves = {
        f"{section}.{name}": field
        for section, section_field in JobConfig.model_fields.items()
        for name, field in section_field.annotation.model_fields.items()
    }
    assert set(table.values()) == set(leaves)
    assert all(field.description for field in leaves.values())
    assert {
        "input",
        "output",
        "model",
        "format",
        "image_column",
        "key_column",
        "images_per_shard",
        "batch_size",
        "max_new_tokens",
        "num_beams",
        "do_sample",
        "seed",
        "actors",
        "gpus_per_actor",
    } <= set(table)


def test_flags_override_the_yaml_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(
        "input: {uri: s3://b/in}\noutput: {uri: s3://b/out}\nmodel: {name: m}\n"
        "generation: {num_beams: 4, max_new_tokens: 10}\n"
    )
    args = build_parser().parse_args(
        ["run", "--config", str(path), "--num-beams", "2", "--do-sample", "--actors", "3"]
    )
    config = load_job_config(args.config, args)
    assert config.generation.num_beams == 2
    assert config.generation.max_new_tokens == 10
    assert config.generation.do_sample is True
    assert config.compute.actors == 3
    assert config.input.uri == "s3://b/in"


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_job_config(str(path), argparse.Namespace())


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_validates_and_flags_override_it(preset, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("generation: {max_new_tokens: 7}\n")
    args = build_parser().parse_args(
        [
            "run",
            "--input",
            "s3://b/in",
            "--output",
            "s3://b/out",
            "--num-beams",
            "5",
            "--config",
            str(path),
        ]
    )
    config = load_job_config(args.config, args, preset)
    assert config.generation.num_beams == 5  # flag over preset
    assert config.generation.max_new_tokens == 7  # file over preset
    assert config.model.name.startswith(("microsoft/", "nlpconnect/"))


def test_presets_for_ocr_caption_and_labeling_exist():
    assert {"ocr", "ocr-handwritten", "caption", "label"} <= set(preset_names())


def test_the_label_preset_takes_a_choices_file(tmp_path):
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    argv = ["run", "--input", "in", "--output", "out", "--choices", str(tmp_path / "labels.txt")]
    config = load_job_config(None, build_parser().parse_args(argv), "label")
    assert config.label.choices == ("cat", "dog")


@pytest.mark.parametrize(
    ("actors", "gpus", "pool"),
    [
        (3, 1.0, (3, 3)),
        ("2..6", 1.0, (2, 6)),
        ("1..1", 0.0, (1, 1)),
        (None, 1.0, (4, None)),  # one per GPU now, more as GPUs join
        ("auto", 0.5, (8, None)),
        ("auto", 0.0, (1, 1)),  # CPU: one actor
    ],
)
def test_actor_pool_bounds(actors, gpus, pool):
    compute = validate_config({**BASE, "compute": {"actors": actors}}).compute
    assert compute.actor_pool(cluster_gpus=4, gpus_per_actor=gpus) == pool


@pytest.mark.parametrize("actors", [0, "0..2", "4..2", "many", "1.5"])
def test_a_bad_actor_count_is_refused_with_the_forms_it_takes(actors):
    with pytest.raises(ConfigError, match=r"compute\.actors.*MIN\.\.MAX"):
        validate_config({**BASE, "compute": {"actors": actors}})
