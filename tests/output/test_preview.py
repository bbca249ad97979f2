"""`shardscribe preview` on a real output: the page's cards, the contact sheet, sampling,
and the page as Chromium renders it (its filters and its images)."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import shutil
import statistics
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import fsspec
import numpy
import pyarrow.parquet as pq
import pytest
from PIL import Image

from jobs.cli import main
from jobs.preview import diff_markup, render_page, sheet_size
from pipeline.job_config import StorageSettings
from pipeline.output.commit import commit_shard
from pipeline.output.sampling import preview_rows, sample_rows
from pipeline.run.runner import run_job
from tests.conftest import job_config
from tests.support.data import (
    sample_images,
    text_image,
    webdataset_members,
    write_pdf,
    write_tar,
)

HOSTILE_KEY = "evil<b>&\"'"


@pytest.fixture(scope="module")
def output(tmp_path_factory, tiny_model, ray_cluster) -> dict:
    """A real scored output of two shards (12 rows); two rows have errors: a corrupt image
    and a key without an image. One key holds HTML."""
    root = tmp_path_factory.mktemp("preview")
    first = webdataset_members(sample_images(5)) | {f"{HOSTILE_KEY}.png": text_image("html")}
    second = webdataset_members(sample_images(4, offset=5)) | {
        "corrupt.png": b"\x89PNG\r\n\x1a\n not really",
        "lonely.txt": b"a caption without an image",
    }
    write_tar(root / "in" / "a.tar", first)
    write_tar(root / "in" / "b.tar", second)
    config = job_config(root / "in", root / "out", tiny_model, label={"score": True})
    assert run_job(config).exit_code == 0
    table = pq.read_table(root / "out", columns=["shard", "key", "text", "error", "score"])
    rows = {(row["shard"], row["key"]): row for row in table.to_pylist()}
    return {"root": root, "uri": str(root / "out"), "rows": rows}


def preview(output: dict, tmp_path: Path, *args: str) -> tuple[str, list[dict], Path]:
    """Run the command in-process; returns the page, its cards, and the sheet's path."""
    code = main(["preview", output["uri"], "--out", str(tmp_path / "preview"), *args])
    assert code == 0
    page = (tmp_path / "preview" / "preview.html").read_text(encoding="utf-8")
    return page, parse_cards(page), tmp_path / "preview" / "contact_sheet.png"


class CardParser(HTMLParser):
    """Each card's attributes, image sources and caption fields (text unescaped)."""

    def __init__(self):
        super().__init__()
        self.cards: list[dict] = []
        self._field: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "figure":
            self.cards.append({**attributes, "images": [], "fields": {}})
        elif tag == "img" and self.cards:
            self.cards[-1]["images"].append(attributes["src"])
        elif tag == "div" and self.cards:
            self._field = attributes.get("class")

    def handle_data(self, data):
        if self._field:
            fields = self.cards[-1]["fields"]
            fields[self._field] = fields.get(self._field, "") + data

    def handle_endtag(self, tag):
        if tag == "div":
            self._field = None


def parse_cards(page: str) -> list[dict]:
    parser = CardParser()
    parser.feed(page)
    return parser.cards


def test_page_has_n_cards_with_their_keys_texts_and_inline_images(output, tmp_path, capsys):
    page, cards, sheet = preview(output, tmp_path, "-n", "7")
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "preview" / "preview.html"),
        str(sheet),
    ]
    assert len(cards) == 7
    assert len({(card["data-shard"], card["data-key"]) for card in cards}) == 7
    for card in cards:
        row = output["rows"][(card["data-shard"], card["data-key"])]
        assert card["fields"]["key"] == row["key"]
        assert card["fields"].get("text") == row["text"]
        assert card["data-score"] == ("" if row["score"] is None else repr(row["score"]))
        if row["text"] is not None:
            assert f'<div class="text">{html.escape(row["text"])}</div>' in page
        if row["error"] is None:
            (source,) = card["images"]
            assert source.startswith("data:image/jpeg;base64,")
            picture = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
            assert max(picture.size) <= 256
    assert "http://" not in page and "https://" not in page  # no external assets


def test_every_row_when_n_exceeds_the_output_and_hostile_keys_are_escaped(output, tmp_path):
    page, cards, _ = preview(output, tmp_path, "-n", "100")
    assert {(c["data-shard"], c["data-key"]) for c in cards} == set(output["rows"])
    assert HOSTILE_KEY not in page
    assert html.escape(HOSTILE_KEY) in page
    by_key = {card["data-key"]: card for card in cards}
    assert by_key["corrupt"]["images"] == []
    assert "not a recognised image format" in by_key["corrupt"]["fields"]["placeholder"]
    assert by_key["corrupt"]["fields"]["message"] == output["rows"][("b", "corrupt")]["error"]
    assert by_key["lonely"]["fields"]["placeholder"] == "no image: no image member (found: txt)"


def test_sample_is_seeded_and_spread_over_shards(output, tmp_path):
    def keys(seed: int) -> list[tuple[str, str]]:
        rows = preview_rows(output["uri"], StorageSettings(), 4, seed)
        return [(row.shard, row.key) for row in rows]

    assert keys(0) == keys(0)
    assert len({tuple(keys(seed)) for seed in range(6)}) > 1
    assert Counter(shard for shard, _ in keys(3)) == {"a": 2, "b": 2}


def test_contact_sheet_is_a_grid_of_the_sampled_rows(output, tmp_path):
    _, _, sheet = preview(output, tmp_path, "-n", "10")
    with Image.open(sheet) as picture:
        assert picture.format == "PNG"
        assert picture.size == sheet_size(10)
    assert sheet_size(10) == (8 * 176, 2 * 176) and sheet_size(3) == (3 * 176, 176)


def test_errors_samples_only_rows_with_an_error(output, tmp_path):
    _, cards, _ = preview(output, tmp_path, "--errors")
    errors = {key for key, row in output["rows"].items() if row["error"] is not None}
    assert (
        {(c["data-shard"], c["data-key"]) for c in cards}
        == errors
        == {
            ("b", "corrupt"),
            ("b", "lonely"),
        }
    )
    assert all(card["data-error"] == "1" and "error" in card["class"] for card in cards)


def test_input_override_and_a_missing_input_shard_still_give_cards(output, tmp_path):
    other = write_tar(tmp_path / "other" / "c.tar", webdataset_members(sample_images(1)))
    _, cards, _ = preview(output, tmp_path, "-n", "3", "--input", str(other.parent))
    assert len(cards) == 3
    for card in cards:
        assert card["images"] == []
        assert (
            card["fields"]["placeholder"] == f"no image: input shard not found under {other.parent}"
        )


def test_unknown_output_exits_2_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jobs", "preview", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert f"output {tmp_path / 'nowhere'} holds no committed shards" in result.stderr
    assert not (tmp_path / "preview").exists()


class CountingFS:
    """Counts the files a sampler opens."""

    def __init__(self, fs):
        self.fs, self.opened = fs, []

    def open(self, path, mode="rb"):
        self.opened.append(path)
        return self.fs.open(path, mode)


def test_sampling_a_large_output_reads_few_footers_and_files(tmp_path):
    fs = fsspec.filesystem("file")
    files = {}
    for index in range(100):
        shard = f"s{index:03d}"
        rows = [
            {
                "index": i,
                "shard": shard,
                "key": str(i),
                "text": "t",
                "error": None,
                "passthrough": b"",
            }
            for i in range(3)
        ]
        commit_shard(fs, str(tmp_path), shard, rows, "fp")
        files[shard] = str(tmp_path / f"{shard}.parquet")
    counting = CountingFS(fs)
    rows = sample_rows(counting, files, 5, seed=1, errors_only=False)
    assert len({row.shard for row in rows}) == 5
    assert len(counting.opened) == 16 + 5  # one batch of footers, then the chosen shards


# --- the page in a real browser ------------------------------------------------------


def browser_dom(page: Path, fragment: str = "") -> tuple[list[dict], str]:
    """The cards and the DOM of the page as headless Chromium leaves it after its script."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run does)")
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={page.parent / 'chromium-profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri() + fragment,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return parse_cards(result.stdout), result.stdout


def visible(cards: list[dict]) -> set[str]:
    return {card["data-key"] for card in cards if "hidden" not in card}


def test_browser_shows_every_card_with_its_image_decoded(output, tmp_path):
    _, cards, _ = preview(output, tmp_path, "-n", "100")
    rendered, dom = browser_dom(tmp_path / "preview" / "preview.html")
    assert visible(rendered) == {card["data-key"] for card in cards}
    with_images = [card for card in rendered if card["images"]]
    assert len(with_images) == len(cards) - 2
    assert all("loaded" in card["class"].split() for card in with_images)
    assert not [card for card in rendered if "broken" in card["class"]]
    assert f"{len(cards)} of {len(cards)} shown" in dom


def test_browser_filters_errors_and_low_scores_from_the_url(output, tmp_path):
    preview(output, tmp_path, "-n", "100")
    page = tmp_path / "preview" / "preview.html"
    errors = {key for (_, key), row in output["rows"].items() if row["error"] is not None}
    assert visible(browser_dom(page, "#errors")[0]) == errors
    scores = {key: row["score"] for (_, key), row in output["rows"].items()}
    limit = statistics.median(score for score in scores.values() if score is not None)
    low = {key for key, score in scores.items() if score is not None and score < limit}
    assert visible(browser_dom(page, f"#score-below={limit!r}")[0]) == low
    assert 0 < len(low) < len(scores)


def test_browser_marks_an_image_it_cannot_decode(output, tmp_path):
    page, cards, _ = preview(output, tmp_path, "-n", "2")
    spoiled = page.replace(cards[0]["images"][0], "data:image/jpeg;base64,AAAA")
    (tmp_path / "spoiled.html").write_text(spoiled, encoding="utf-8")
    rendered, _ = browser_dom(tmp_path / "spoiled.html")
    assert ["broken" in card["class"] for card in rendered] == [True, False]


def test_browser_page_without_scores(output, tmp_path):
    rows = preview_rows(output["uri"], StorageSettings(), 100, seed=0)
    unscored = [dataclasses.replace(row, score=None) for row in rows]
    page = render_page(unscored, "no scores")
    assert 'id="score-below"' not in page
    (tmp_path / "unscored.html").write_text(page, encoding="utf-8")
    rendered, dom = browser_dom(tmp_path / "unscored.html", "#errors")
    assert visible(rendered) == {"corrupt", "lonely"}
    assert f"2 of {len(rows)} shown" in dom


# --- reference texts and pages ------------------------------------------------------


def test_differences_from_the_reference_are_marked_character_by_character():
    assert diff_markup("Total: 118.00 EUR", "Tota1: 118,00 EUR") == (
        "Tota<del>l</del><ins>1</ins>: 118<del>.</del><ins>,</ins>00 EUR"
    )
    assert diff_markup("a<b", "") == "<del>a&lt;b</del>"
    assert diff_markup("same", "same") == "same"


def test_cards_show_the_inputs_reference_text_and_filter_rows_that_differ(output, tmp_path):
    """The WebDataset .txt sidecar is the reference; the tiny model's texts differ."""
    page, cards, _ = preview(output, tmp_path, "-n", "100")
    with_reference = {card["data-key"] for card in cards if card["data-key"] in REFERENCED_KEYS}
    for card in cards:
        row = output["rows"][(card["data-shard"], card["data-key"])]
        if card["data-key"] not in with_reference:
            assert "reference" not in card["fields"] and card["data-differs"] == ""
            continue
        reference = REFERENCED_KEYS[card["data-key"]]
        markup = diff_markup(reference, row["text"] or "")
        assert f'<div class="reference">{markup}</div>' in page
        assert card["data-differs"] == "1"
    assert 'id="differs-only"' in page
    rendered, _ = browser_dom(tmp_path / "preview" / "preview.html", "#differs")
    assert visible(rendered) == with_reference


REFERENCED_KEYS = {f"s{i:04d}": f"text of s{i:04d}" for i in range(9)} | {
    "lonely": "a caption without an image"
}


def test_a_page_card_shows_the_page_with_its_line_boxes_and_lines_in_order(
    tiny_model, ray_cluster, tmp_path
):
    write_pdf(tmp_path / "in" / "doc.pdf", ["First line here\nSecond line\nThird", "Alone"])
    config = job_config(
        tmp_path / "in",
        tmp_path / "out",
        tiny_model,
        input={"segment": "lines", "pdf_dpi": 72, "format": "pdf"},
    )
    assert run_job(config).exit_code == 0
    stored = {row["key"]: row for row in pq.read_table(tmp_path / "out").to_pylist()}
    code = main(["preview", str(tmp_path / "out"), "--out", str(tmp_path / "preview")])
    assert code == 0
    page = (tmp_path / "preview" / "preview.html").read_text(encoding="utf-8")
    cards = parse_cards(page)
    assert sorted(card["data-key"] for card in cards) == ["page-0001", "page-0002"]
    for card in cards:
        row = stored[card["data-key"]]
        assert card["class"] == "card page"
        items = "".join(f"<li>{html.escape(line['text'])}</li>" for line in row["lines"])
        assert f'<ol class="lines">{items}</ol>' in page
        (source,) = card["images"]
        picture = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
        assert picture.size == (595, 842)  # the page as rendered (under 900 px: not scaled)
        red = (numpy.asarray(picture.convert("RGB")) - (220, 30, 30)).__abs__().sum(axis=2)
        assert (red < 120).sum() > 50 * len(row["lines"])  # its line boxes are drawn
