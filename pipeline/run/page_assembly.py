"""A page's line rows joined into its one output row: the text in reading order, the
lines with their boxes, a score, and where the text came from."""

from __future__ import annotations

from typing import Any

TEXT_SOURCE_OCR = "ocr"


def merge_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The output row of an item from its parts (ordered by `part`). A whole image stays
    as it is; a segmented page's text is its lines joined with newlines (pieces of one
    line with a space), `lines` lists them, `score` is the mean of the lines'. A line's
    error becomes the page's, named by its line number; the other lines keep their text.
    `text_source`: the PDF's own text ("pdf"), an earlier OCR's layer ("ocr_layer"), or
    this run's reading ("ocr")."""
    first = parts[0]
    source = first.get("text_source") or TEXT_SOURCE_OCR
    if first["box"] is None and first["parts"] <= 1:
        return first | {"text_source": source, "lines": None if first["parts"] else []}
    lines: list[dict[str, Any]] = []
    scores: list[list[float]] = []
    errors = []
    for part in parts:
        if part["error"] is not None:
            errors.append(part)
            continue
        box = dict(zip(("x0", "y0", "x1", "y1"), part["box"], strict=True))
        if part["continues"] and lines:
            last = lines[-1]
            last |= {
                "x1": max(last["x1"], box["x1"]),
                "y0": min(last["y0"], box["y0"]),
                "y1": max(last["y1"], box["y1"]),
                "text": f"{last['text']} {part['text']}",
            }
        else:
            lines.append(box | {"text": part["text"]})
            scores.append([])
        if part.get("score") is not None:
            scores[-1].append(part["score"])
    for line, line_scores in zip(lines, scores, strict=True):
        line["score"] = sum(line_scores) / len(line_scores) if line_scores else None
    line_scores = [line["score"] for line in lines if line["score"] is not None]
    return first | {
        "text": "\n".join(line["text"] for line in lines),
        "lines": lines,
        "score": sum(line_scores) / len(line_scores) if line_scores else None,
        "text_source": source,
        "error": _line_errors(errors),
        "error_class": errors[0]["error_class"] if errors else None,
    }


def _line_errors(parts: list[dict[str, Any]]) -> str | None:
    """'<class>: line 3: <message>; line 7: <message>' (the first line's class)."""
    if not parts:
        return None
    kind = parts[0]["error_class"]
    messages = (
        f"line {part['part'] + 1}: {part['error'].removeprefix(part['error_class'] + ': ')}"
        for part in parts
    )
    return f"{kind}: " + "; ".join(messages)
