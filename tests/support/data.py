"""Test inputs written with plain tarfile, pyarrow and Pillow, not with shardscribe's code."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

TEXTS = ["hello world", "ray data 42", "Parquet!", "x", "encoder decoder", "0123456789", "a b c"]


def text_image(text: str, width: int = 160, height: int = 40, fmt: str = "PNG") -> bytes:
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).text((4, 8), text, fill="black", font=ImageFont.load_default(size=18))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def sample_images(count: int, offset: int = 0) -> dict[str, bytes]:
    """{key: png bytes}, each image different."""
    return {
        f"s{offset + i:04d}": text_image(
            TEXTS[(offset + i) % len(TEXTS)] + f" {offset + i}", width=120 + 7 * ((offset + i) % 9)
        )
        for i in range(count)
    }


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def webdataset_members(images: dict[str, bytes]) -> dict[str, bytes]:
    members = {}
    for key, data in images.items():
        members[f"{key}.png"] = data
        members[f"{key}.txt"] = f"text of {key}".encode()
        members[f"{key}.json"] = json.dumps({"key": key}).encode()
    return members


def write_parquet(path: Path, images: dict[str, bytes], struct: bool = True) -> Path:
    """Hugging Face datasets layout: image as {bytes, path}, plus a label and an id column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(images)
    image_column = (
        pa.array(
            [{"bytes": images[k], "path": f"{k}.png"} for k in keys],
            pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
        )
        if struct
        else pa.array(list(images.values()), pa.binary())
    )
    table = pa.table(
        {
            "id": pa.array(keys, pa.string()),
            "image": image_column,
            "label": pa.array(range(len(keys)), pa.int32()),
            "tags": pa.array([[k, "x"] for k in keys], pa.list_(pa.string())),
        }
    )
    pq.write_table(table, path)
    return path


def write_image_folder(root: Path, images: dict[str, bytes]) -> Path:
    for key, data in images.items():
        (root / f"{key}.png").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{key}.png").write_bytes(data)
    return root


def write_pdf(
    path: Path,
    pages: list[str],
    size_pt: tuple[float, float] = (595.0, 842.0),
    user_password: str | None = None,
) -> Path:
    """A PDF written by fpdf2 (Helvetica, so every page has a text layer): one page per
    text, lines split at newlines; encrypted when a user password is given."""
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format=size_pt)
    pdf.set_margins(50, 50)
    pdf.set_font("helvetica", size=14)
    for text in pages:
        pdf.add_page()
        for line in text.splitlines():
            pdf.cell(0, 24, line, new_x="LMARGIN", new_y="NEXT")
    if user_password is not None:
        pdf.set_encryption(owner_password="owner", user_password=user_password)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path
