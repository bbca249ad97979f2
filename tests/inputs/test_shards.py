import fsspec
import pytest

from pipeline.exceptions import InputError
from pipeline.inputs.shards import discover_shards, shard_id
from pipeline.job_config import InputSettings

fs = fsspec.filesystem("file")


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("train/shard-0001.tar", "train/shard-0001"),
        ("a.parquet", "a"),
        ("x.tar.gz", "x"),
        ("../../etc/passwd.tar", "etc/passwd"),
        ("/abs/path.tar", "abs/path"),
        ("dir\\..\\evil.tar", "dir/evil"),
        ("./a/./b.parquet", "a/b"),
        ("bad\x00name\x1b.tar", "bad_name_"),
        ("%2e%2e/%2E%2E/x.tar", "x"),
        ("a%2f..%2f..%5cb.tar", "a/b"),
        ("line%0abreak.tar", "line_break"),
    ],
)
def test_shard_ids_are_relative_and_sanitised(relative, expected):
    assert shard_id(relative) == expected


def test_a_path_with_no_usable_name_is_refused():
    with pytest.raises(InputError, match="no usable name"):
        shard_id("../..")


def _touch(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_auto_format_and_hidden_files_are_ignored(tmp_path):
    _touch(
        tmp_path, "b.tar", "a.tar", "sub/c.tar", "_shardscribe/run.json", ".hidden.tar", "README"
    )
    shards = discover_shards(fs, str(tmp_path), InputSettings(uri=str(tmp_path)))
    assert [s.id for s in shards] == ["a", "b", "sub/c"]
    assert {s.format for s in shards} == {"webdataset"}


def test_mixed_formats_need_an_explicit_format(tmp_path):
    _touch(tmp_path, "a.tar", "b.parquet")
    with pytest.raises(InputError, match=r"found 1 parquet, 1 webdataset.*--format"):
        discover_shards(fs, str(tmp_path), InputSettings(uri=str(tmp_path)))
    shards = discover_shards(fs, str(tmp_path), InputSettings(uri=str(tmp_path), format="parquet"))
    assert [s.id for s in shards] == ["b"]


def test_image_folders_are_grouped_by_sorted_path_per_directory(tmp_path):
    _touch(tmp_path, *[f"d/{i:02d}.png" for i in range(5)], "e/z.jpg", "top.png")
    settings = InputSettings(uri=str(tmp_path), images_per_shard=2)
    shards = discover_shards(fs, str(tmp_path), settings)
    assert [(s.id, [p.rsplit("/", 2)[-2:] for p in s.paths]) for s in shards] == [
        ("d/part-00000", [["d", "00.png"], ["d", "01.png"]]),
        ("d/part-00001", [["d", "02.png"], ["d", "03.png"]]),
        ("d/part-00002", [["d", "04.png"]]),
        ("e/part-00000", [["e", "z.jpg"]]),
        ("part-00000", [[tmp_path.name, "top.png"]]),
    ]


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist or is empty"):
        discover_shards(fs, str(tmp_path / "nope"), InputSettings(uri=str(tmp_path / "nope")))


def test_colliding_ids_are_refused(tmp_path):
    _touch(tmp_path, "a.tar", "a.tar.gz")
    with pytest.raises(InputError, match="same id 'a'"):
        discover_shards(fs, str(tmp_path), InputSettings(uri=str(tmp_path)))


def test_an_output_inside_the_input_is_not_input(tmp_path):
    _touch(tmp_path, "a.tar", "out/a.parquet", "out/sub/b.parquet")
    shards = discover_shards(
        fs, str(tmp_path), InputSettings(uri=str(tmp_path)), exclude=str(tmp_path / "out")
    )
    assert [s.id for s in shards] == ["a"]


def test_shards_carry_their_listed_sizes(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.tar").write_bytes(b"x" * 700)
    (tmp_path / "i").mkdir()
    (tmp_path / "i" / "p.png").write_bytes(b"12345")
    (tmp_path / "i" / "q.png").write_bytes(b"678")
    (tar,) = discover_shards(fs, str(tmp_path / "t"), InputSettings(uri=str(tmp_path / "t")))
    assert tar.size == 700
    (images,) = discover_shards(fs, str(tmp_path / "i"), InputSettings(uri=str(tmp_path / "i")))
    assert images.size == 8
