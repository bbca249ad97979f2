"""The bad-input catalogue: each case has one documented outcome (docs/reliability.md).

Never a hang, never a crashed job: a row error, or a shard error naming the problem.
"""

from __future__ import annotations

import io
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.output.status import failure_records
from pipeline.run.runner import run_job
from tests.conftest import job_config
from tests.support.data import sample_images, write_tar

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("ray_cluster")]

PNG = sample_images(1)["s0000"]


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _jpeg() -> bytes:
    return _encode(Image.open(io.BytesIO(PNG)).convert("RGB"), "JPEG")


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return _encode(Image.new("RGB", (60, 20), "white"), "JPEG", exif=exif.tobytes())


def _animated_gif() -> bytes:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (40, 20), colour) for colour in colours]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (30, 20), 0)
    return _encode(image, "PNG", transparency=0)


VALID_UNUSUAL = {
    "cmyk.jpg": _encode(Image.new("CMYK", (40, 20), (0, 0, 0, 255)), "JPEG"),
    "gray16.png": _encode(Image.new("I;16", (40, 20), 4000), "PNG"),
    "palette.png": _palette_with_transparency(),
    "gray.png": _encode(Image.new("L", (40, 20), 128), "PNG"),
    "exif.jpg": _exif_rotated_jpeg(),
    "anim.gif": _animated_gif(),
    "tiny.png": _encode(Image.new("RGB", (1, 1), "white"), "PNG"),
    "wide.png": _encode(Image.new("RGB", (4000, 8), "white"), "PNG"),
}
BAD_ROWS = {
    "text.jpg": b"this is text, not a jpeg",
    "cut.jpg": _jpeg()[:300],
    "cutpng.png": PNG[: len(PNG) // 2],
    "zero.png": b"",
    "bomb.png": _encode(Image.new("L", (1200, 1000)), "PNG"),
}
EXPECTED_ROW_ERRORS = {
    "text": "decode: cannot decode image: not a recognised image format",
    "cut": "decode: cannot decode image: OSError: Truncated File Read",
    "cutpng": "decode: cannot decode image: OSError: image file is truncated",
    "zero": "decode: empty image (0 bytes)",
    "bomb": "decode: image too large (decompression bomb limit): Image size (1200000 pixels) "
    "exceeds limit of 1000000 pixels, could be decompression bomb DOS attack.",
    "meta": "input: no image member (found: txt)",
    "twice#2": "input: duplicate key 'twice' in shard (occurrence 2)",
}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("bad")
    # A sample's members are adjacent; the .txt sidecar is not UTF-8.
    good = [*VALID_UNUSUAL.items(), ("gray.txt", b"caf\xe9 latin-1, not utf-8")]
    good.insert(list(VALID_UNUSUAL).index("gray.png") + 1, good.pop())
    _write_members(root / "in" / "unusual.tar", good)
    # A key that comes back later is a second sample with that key.
    repeats = [("twice.png", PNG), ("other.png", PNG), ("twice.png", PNG)]
    bad = [*BAD_ROWS.items(), ("meta.txt", b"a sample without an image"), *repeats]
    _write_members(root / "in" / "badrows.tar", bad)
    truncated = write_tar(root / "in" / "truncated.tar", {"a.png": PNG, "b.png": PNG})
    truncated.write_bytes(truncated.read_bytes()[:1200])
    write_tar(root / "in" / "empty.tar", {})
    config = job_config(
        root / "in", root / "out", tiny_model, input={"max_image_pixels": 1_000_000}
    )
    return root, run_job(config)


def _write_members(path, members):
    """Like tests.support.data.write_tar, but members may repeat a name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _rows(root, shard):
    return {row["key"]: row for row in pq.read_table(root / "out" / f"{shard}.parquet").to_pylist()}


def test_the_job_finishes_and_names_only_the_truncated_tar(catalogue):
    _, summary = catalogue
    assert summary.exit_code == 1
    assert summary.failed == {
        "truncated": "input: corrupt or truncated tar: ReadError: unexpected end of data"
    }
    assert summary.shards_committed == 3


def test_valid_but_unusual_images_decode(catalogue):
    root, _ = catalogue
    rows = _rows(root, "unusual")
    assert set(rows) == {name.split(".")[0] for name in VALID_UNUSUAL}
    assert {key: row["error"] for key, row in rows.items()} == dict.fromkeys(rows)
    assert all(isinstance(row["text"], str) for row in rows.values())
    assert rows["gray"]["txt"] == "caf\ufffd latin-1, not utf-8"


def test_bad_images_become_row_errors_and_the_shard_commits(catalogue):
    root, _ = catalogue
    rows = _rows(root, "badrows")
    order = ["text", "cut", "cutpng", "zero", "bomb", "meta", "twice", "other", "twice#2"]
    assert [row["key"] for row in rows.values()] == order
    errors = {key: row["error"] for key, row in rows.items() if row["error"]}
    assert errors == EXPECTED_ROW_ERRORS
    assert rows["twice"]["error"] is None and rows["other"]["error"] is None


def test_an_empty_shard_commits_with_zero_rows(catalogue):
    root, _ = catalogue
    table = pq.read_table(root / "out" / "empty.parquet")
    assert table.num_rows == 0 and table.column_names == ["shard", "key", "text", "error"]


def test_failures_are_listed_with_their_class(catalogue):
    root, _ = catalogue
    records = failure_records(str(root / "out"), job_config("i", "o", "m").storage)
    shard_records = [r for r in records if r["kind"] == "shard"]
    assert shard_records == [
        {
            "kind": "shard",
            "shard": "truncated",
            "key": None,
            "error_class": "input",
            "error": "input: corrupt or truncated tar: ReadError: unexpected end of data",
            "attempts": 1,
        }
    ]
    row_records = {(r["shard"], r["key"]): r["error_class"] for r in records if r["kind"] == "row"}
    assert row_records == {
        ("badrows", key): error.split(":")[0] for key, error in EXPECTED_ROW_ERRORS.items()
    }


def test_parquet_schema_problems_fail_their_shard_only(tmp_path, tiny_model):
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "in" / "noimage.parquet")
    pq.write_table(
        pa.table({"image": pa.array([1, 2], pa.int64())}), tmp_path / "in" / "wrongtype.parquet"
    )
    pq.write_table(pa.table({"image": [PNG, PNG]}), tmp_path / "in" / "ok.parquet")
    summary = run_job(job_config(tmp_path / "in", tmp_path / "out", tiny_model))
    assert summary.exit_code == 1 and summary.shards_committed == 1
    assert summary.failed["noimage"].startswith("input: no image column (binary or struct")
    assert summary.failed["wrongtype"].startswith("input: no image column")
    explicit = run_job(
        job_config(tmp_path / "in", tmp_path / "out2", tiny_model, input={"image_column": "image"})
    )
    assert explicit.failed["wrongtype"] == (
        "input: image column 'image' has type int64, expected binary or "
        "struct<bytes: binary, path: string>"
    )
    assert explicit.failed["noimage"] == "input: image column 'image' not found; columns: ['a']"


def test_gif_first_frame_and_exif_rotation_are_what_decoding_gives():
    from model import decode_image

    assert decode_image(_exif_rotated_jpeg()).size == (20, 60)
    first = decode_image(_animated_gif())
    assert first.size == (40, 20) and first.getpixel((0, 0)) == (255, 0, 0)
