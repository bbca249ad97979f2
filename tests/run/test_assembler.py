"""The driver's assembler: rows kept once per index, and the slow-shard list names only
shards still in flight."""

from __future__ import annotations

from pipeline.failures import FailureClass
from pipeline.run.assembler import ShardAssembler
from pipeline.run.rows import item_row


def _row(shard: str, index: int, rows: int) -> dict:
    return item_row(shard, f"k{index}", index, rows, b"") | {"text": f"t{index}"}


def _line(index: int, part: int, parts: int, text: str, continues: bool = False) -> dict:
    box = [10 * part, 20 * part, 10 * part + 8, 20 * part + 9]
    return _row("s", index, 2) | {
        "part": part,
        "parts": parts,
        "box": box,
        "continues": continues,
        "text": text,
    }


def test_a_committed_shard_leaves_the_slow_list_and_the_straggler_stays():
    assembler = ShardAssembler({"done", "straggler", "failed"})
    assert assembler.add(_row("done", 0, 1)) is not None
    assert assembler.add(_row("straggler", 0, 2)) is None
    assembler.add(_row("failed", 0, 3))
    assembler.fail_unfinished(FailureClass.LOST, "pass aborted")
    assert assembler.slow_shards(older_than_s=0) == []
    again = ShardAssembler({"done", "straggler"})
    again.add(_row("done", 0, 1))
    again.add(_row("straggler", 0, 2))
    assert again.slow_shards(older_than_s=0) == ["straggler"]


def test_a_row_delivered_twice_is_kept_once():
    assembler = ShardAssembler({"s"})
    assert assembler.add(_row("s", 0, 2)) is None
    assert assembler.add(_row("s", 0, 2)) is None  # a retried task's duplicate
    rows = assembler.add(_row("s", 1, 2))
    assert [row["index"] for row in rows] == [0, 1]


def test_a_page_is_complete_with_all_its_lines_in_any_order_and_reads_in_part_order():
    assembler = ShardAssembler({"s"})
    assert assembler.add(_line(0, 2, 3, "world")) is None
    assert assembler.add(_line(0, 0, 3, "hello")) is None
    assert assembler.add(_line(0, 2, 3, "world")) is None  # a retried task's duplicate
    assert assembler.add(_line(0, 1, 3, "there", continues=True)) is None
    rows = assembler.add(_row("s", 1, 2) | {"parts": 0, "text": ""})  # a page without lines
    page, blank = sorted(rows, key=lambda row: row["index"])
    assert page["text"] == "hello there\nworld"
    assert page["lines"] == [
        {"x0": 0, "y0": 0, "x1": 18, "y1": 29, "text": "hello there", "score": None},
        {"x0": 20, "y0": 40, "x1": 28, "y1": 49, "text": "world", "score": None},
    ]
    assert (page["error"], page["text_source"]) == (None, "ocr")
    assert (blank["text"], blank["lines"]) == ("", [])


def test_a_line_error_is_the_pages_and_the_other_lines_keep_their_text():
    assembler = ShardAssembler({"s"})
    bad = _line(0, 1, 2, None) | {"error": "decode: too wide", "error_class": "decode"}
    assert assembler.add(bad) is None
    assert assembler.add(_line(0, 0, 2, "kept")) is None
    rows = assembler.add(_row("s", 1, 2))
    page = next(row for row in rows if row["index"] == 0)
    assert (page["text"], page["error"], page["error_class"]) == (
        "kept",
        "decode: line 2: too wide",
        "decode",
    )
