import io
import tarfile

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.exceptions import ShardReadError
from pipeline.inputs.passthrough import decode_rows, encode_rows
from pipeline.inputs.readers import read_source_rows
from pipeline.inputs.shards import Shard
from pipeline.job_config import InputSettings
from tests.support.data import sample_images, webdataset_members, write_parquet, write_tar

fs = fsspec.filesystem("file")


def _read(path, fmt, root=None, **settings):
    shard = Shard("s", fmt, (str(path),), str(root or path.parent))
    return read_source_rows(fs, shard, InputSettings(uri=str(path.parent), **settings))


def test_webdataset_groups_members_by_key_with_sidecars(tmp_path):
    images = sample_images(3)
    members = webdataset_members(images)
    members["sub/s0009.cls"] = b"7"  # a key without an image
    rows = _read(write_tar(tmp_path / "a.tar", members), "webdataset")
    assert rows.keys == ["s0000", "s0001", "s0002", "sub/s0009"]
    assert rows.images[:3] == list(images.values()) and rows.images[3] is None
    assert rows.errors == [None, None, None, "no image member (found: cls)"]
    assert rows.passthrough.column_names == ["json", "txt", "cls"]
    assert rows.passthrough.column("txt").to_pylist() == [
        "text of s0000",
        "text of s0001",
        "text of s0002",
        None,
    ]


def test_truncated_tar_is_a_shard_error(tmp_path):
    path = write_tar(tmp_path / "a.tar", webdataset_members(sample_images(3)))
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(ShardReadError, match="corrupt or truncated tar"):
        _read(path, "webdataset")


def test_gzipped_tar_and_dotted_directories(tmp_path):
    data = sample_images(1)["s0000"]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("./v1.2/s0000.seg.png")  # key 'v1.2/s0000', ext 'seg.png'
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("./v1.2/s0000.jpg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "a.tar.gz").write_bytes(buffer.getvalue())
    rows = _read(tmp_path / "a.tar.gz", "webdataset")
    assert rows.keys == ["v1.2/s0000"] and rows.images == [data] and rows.errors == [None]


def test_parquet_hf_struct_and_passthrough_types(tmp_path):
    images = sample_images(3)
    rows = _read(write_parquet(tmp_path / "p.parquet", images), "parquet", key_column="id")
    assert rows.keys == list(images)
    assert rows.images == list(images.values())
    assert rows.passthrough.schema == pa.schema(
        [("id", pa.string()), ("label", pa.int32()), ("tags", pa.list_(pa.string()))]
    )


def test_parquet_keys_default_to_row_index_and_bytes_column_is_found(tmp_path):
    rows = _read(write_parquet(tmp_path / "p.parquet", sample_images(2), struct=False), "parquet")
    assert rows.keys == ["0", "1"]


def test_parquet_without_image_column_names_the_columns(tmp_path):
    pq.write_table(pa.table({"a": [1], "b": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(ShardReadError, match=r"no image column .* \['a', 'b'\].*--image-column"):
        _read(tmp_path / "p.parquet", "parquet")


def test_parquet_image_column_of_the_wrong_type(tmp_path):
    pq.write_table(pa.table({"image": [1, 2]}), tmp_path / "p.parquet")
    with pytest.raises(ShardReadError, match="image column 'image' has type int64"):
        _read(tmp_path / "p.parquet", "parquet", image_column="image")


def test_duplicate_keys_keep_the_first_and_flag_the_rest(tmp_path):
    images = sample_images(2)
    table = pa.table({"id": ["k", "k"], "image": list(images.values())})
    pq.write_table(table, tmp_path / "p.parquet")
    rows = _read(tmp_path / "p.parquet", "parquet", key_column="id")
    assert rows.keys == ["k", "k#2"]
    assert rows.errors == [None, "duplicate key 'k' in shard (occurrence 2)"]


def test_image_folder_keys_are_relative_paths(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.png").write_bytes(b"png")
    shard = Shard("d/part-00000", "images", (str(tmp_path / "d" / "a.png"),), str(tmp_path))
    rows = read_source_rows(fs, shard, InputSettings(uri=str(tmp_path)))
    assert rows.keys == ["d/a.png"] and rows.images == [b"png"]


def test_passthrough_round_trip_keeps_types():
    table = pa.table({"n": pa.array([1, None], pa.int16()), "l": [[1.5], []]})
    assert decode_rows(encode_rows(table, 2)).equals(table)
    assert encode_rows(None, 2) == [b"", b""] and decode_rows([b"", b""]) is None
