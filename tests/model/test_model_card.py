"""A bundled model's evaluation is written from the OCR benchmark's output, not by hand."""

from __future__ import annotations

import json

import pytest

from benchmarks.model_card import END, START, write_card

RESULT = {
    "lines": 2,
    "cores": 2,
    "num_beams": 1,
    "readers": {
        name: {
            "groups": {"all": {"cer": cer, "exact": 0.5, "lines": 2}},
            "longer_than_1.5x": 0,
            "lines_per_s_per_core": speed,
            "seconds": 1.0,
        }
        for name, cer, speed in (("tesseract", 0.02, 9.1), ("v4 bare", 0.0125, 40.0))
    },
}


def test_the_card_table_and_evaluation_json_come_from_one_result(tmp_path):
    card = tmp_path / "README.md"
    card.write_text(f"# card\n\n{START}\nold table\n{END}\n\nafter\n")
    write_card(RESULT, tmp_path, "python -m benchmarks.ocr_vs_tesseract", "2 cores")
    text = card.read_text()
    assert "old table" not in text and text.endswith("\n\nafter\n")
    assert "| all | 2.00% (50%) | 1.25% (50%) |" in text
    assert "| lines/s per core | 9.1 | 40.0 |" in text
    figures = json.loads((tmp_path / "evaluation.json").read_text())
    assert figures["readers"] == RESULT["readers"]
    assert figures["benchmark"] == "python -m benchmarks.ocr_vs_tesseract"


def test_a_card_without_markers_is_refused(tmp_path):
    (tmp_path / "README.md").write_text("# card\n")
    with pytest.raises(SystemExit, match="evaluation:start"):
        write_card(RESULT, tmp_path, "command", "machine")
