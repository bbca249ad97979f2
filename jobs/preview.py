"""`shardscribe preview`: a sample of an output as one self-contained HTML page (inline
thumbnails, pages with their line boxes, the reference text with the differences
marked, filters for errors, low scores and differences) and a PNG contact sheet, for
people who would rather look than read Parquet."""

from __future__ import annotations

import base64
import difflib
import io
import math
from html import escape
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from pipeline.output.sampling import SampledRow

SHEET_COLUMNS = 8
SHEET_THUMBNAIL = (160, 120)
SHEET_PADDING = 8
SHEET_LINE = 16
CELL_SIZE = (
    SHEET_THUMBNAIL[0] + 2 * SHEET_PADDING,
    SHEET_THUMBNAIL[1] + 2 * SHEET_LINE + 3 * SHEET_PADDING,
)

STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1em; background: #f4f4f4; }
header { display: flex; gap: 1.5em; align-items: baseline; flex-wrap: wrap; }
main { display: flex; flex-wrap: wrap; gap: 10px; }
.card { width: 260px; margin: 0; padding: 8px; background: #fff; border: 1px solid #ddd; }
.card[hidden] { display: none; }
.card.error { border-color: #c33; }
.card.broken { outline: 3px dashed #c33; }
.card img, .placeholder { display: block; max-width: 256px; max-height: 256px; margin: auto; }
.card img { outline: 1px solid #ddd; }
.placeholder { height: 96px; background: #ddd; color: #555; padding: 4px; overflow: hidden; }
.key { font-weight: bold; word-break: break-all; }
.shard, .score { color: #666; font-size: 12px; }
.text { white-space: pre-wrap; margin: 4px 0; }
.message { color: #c33; font-size: 12px; word-break: break-word; }
.card.page { width: auto; max-width: 100%; display: flex; gap: 12px; align-items: flex-start; }
.card.page img { max-width: 620px; max-height: none; margin: 0; }
.card.page figcaption { max-width: 520px; }
.lines { margin: 4px 0; padding-left: 2.2em; font-size: 13px; }
.reference { white-space: pre-wrap; margin: 4px 0; color: #333; font-size: 13px; }
.reference::before { content: "reference: "; color: #666; }
del { background: #fcc; text-decoration: line-through; }
ins { background: #cfc; text-decoration: none; }
"""

# Filters from the controls, or initially from the URL: #errors, #differs (from the
# reference text), #score-below=-1.5, joined by '&'. Cards whose thumbnail the browser
# cannot show get the class "broken".
SCRIPT = """
const cards = [...document.querySelectorAll(".card")];
const errorsOnly = document.getElementById("errors-only");
const scoreBelow = document.getElementById("score-below");
const differsOnly = document.getElementById("differs-only");
function applyFilter() {
  const limit = scoreBelow && scoreBelow.value !== "" ? Number(scoreBelow.value) : null;
  let shown = 0;
  for (const card of cards) {
    const score = card.dataset.score === "" ? null : Number(card.dataset.score);
    const isLow = score !== null && score < limit;
    card.hidden = (errorsOnly.checked && !card.dataset.error) || (limit !== null && !isLow)
      || (differsOnly?.checked && !card.dataset.differs);
    shown += card.hidden ? 0 : 1;
  }
  document.getElementById("shown").textContent = `${shown} of ${cards.length} shown`;
}
const initial = new URLSearchParams(location.hash.slice(1));
errorsOnly.checked = initial.has("errors");
if (differsOnly) differsOnly.checked = initial.has("differs");
if (scoreBelow && initial.has("score-below")) scoreBelow.value = initial.get("score-below");
for (const control of [errorsOnly, scoreBelow, differsOnly]) {
  control?.addEventListener("input", applyFilter);
}
for (const img of document.querySelectorAll(".card img")) {
  const mark = () => img.closest(".card").classList.add(img.naturalWidth ? "loaded" : "broken");
  if (img.complete) mark();
  else { img.addEventListener("load", mark); img.addEventListener("error", mark); }
}
applyFilter();
"""


def write_preview(rows: list[SampledRow], title: str, out_dir: Path) -> tuple[Path, Path]:
    """Write `preview.html` and `contact_sheet.png` under `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    page, sheet = out_dir / "preview.html", out_dir / "contact_sheet.png"
    page.write_text(render_page(rows, title), encoding="utf-8")
    render_contact_sheet(rows).save(sheet)
    return page, sheet


def render_page(rows: list[SampledRow], title: str) -> str:
    has_scores = any(row.score is not None for row in rows)
    score_control = (
        '<label>score below <input id="score-below" type="number" step="0.1"></label>'
        if has_scores
        else ""
    )
    if any(row.reference is not None for row in rows):
        score_control += (
            '<label><input id="differs-only" type="checkbox"> differs from reference</label>'
        )
    cards = "\n".join(_card(row) for row in rows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>shardscribe preview: {escape(title)}</title><style>{STYLE}</style></head>
<body><header><h1>{escape(title)}</h1>
<label><input id="errors-only" type="checkbox"> errors only</label>{score_control}
<span id="shown">{len(rows)} rows</span></header>
<main>
{cards}
</main><script>{SCRIPT}</script></body></html>
"""


def _card(row: SampledRow) -> str:
    failed = row.error is not None
    classes = ["card"] + ["error"] * failed + ["page"] * (row.lines is not None)
    attributes = {
        "class": " ".join(classes),
        "data-shard": row.shard,
        "data-key": row.key,
        "data-error": "1" if failed else "",
        "data-differs": "1" if _differs(row) else "",
        "data-score": "" if row.score is None else repr(row.score),
    }
    opening = " ".join(f'{name}="{escape(value)}"' for name, value in attributes.items())
    return f"<figure {opening}>{_picture(row)}<figcaption>{_caption(row)}</figcaption></figure>"


def _picture(row: SampledRow) -> str:
    if row.thumbnail is None:
        return f'<div class="placeholder">no image: {escape(row.missing_image or "")}</div>'
    return f'<img alt="" src="{_data_uri(with_line_boxes(row))}">'


def with_line_boxes(row: SampledRow) -> Image.Image:
    """The row's thumbnail; for a page, with each line's box drawn and numbered."""
    if not row.lines or row.thumbnail is None or row.image_size is None:
        return row.thumbnail
    page = row.thumbnail.convert("RGB")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=11)
    scale = page.width / row.image_size[0]
    for number, line in enumerate(row.lines, 1):
        box = [round(line[name] * scale) for name in ("x0", "y0", "x1", "y1")]
        draw.rectangle(box, outline=(220, 30, 30), width=2)
        draw.text((box[0] - 2, box[1]), str(number), fill=(220, 30, 30), font=font, anchor="rt")
    return page


def _caption(row: SampledRow) -> str:
    parts = [("key", row.key), ("shard", row.shard)]
    if row.lines:
        parts.append(("lines", None))
    else:
        parts.append(("text", row.text))
    if row.score is not None or row.label_prob is not None:
        parts.append(("score", _score_line(row)))
    parts.append(("message", row.error))
    html = []
    for name, value in parts:
        if name == "lines":
            items = "".join(f"<li>{escape(line['text'] or '')}</li>" for line in row.lines)
            html.append(f'<ol class="lines">{items}</ol>')
        elif value is not None:
            html.append(f'<div class="{name}">{escape(value)}</div>')
    if row.reference is not None:
        html.append(f'<div class="reference">{diff_markup(row.reference, row.text or "")}</div>')
    return "".join(html)


def _differs(row: SampledRow) -> bool:
    return row.reference is not None and row.reference.strip() != (row.text or "").strip()


def diff_markup(reference: str, text: str) -> str:
    """The reference with what the model got wrong marked: <del> what it missed or misread,
    <ins> what it read instead, character by character; escaped HTML."""
    parts = []
    matcher = difflib.SequenceMatcher(None, reference, text, autojunk=False)
    for operation, a0, a1, b0, b1 in matcher.get_opcodes():
        if operation == "equal":
            parts.append(escape(reference[a0:a1]))
            continue
        if a1 > a0:
            parts.append(f"<del>{escape(reference[a0:a1])}</del>")
        if b1 > b0:
            parts.append(f"<ins>{escape(text[b0:b1])}</ins>")
    return "".join(parts)


def _score_line(row: SampledRow) -> str:
    parts = []
    if row.score is not None:
        parts.append(f"score {row.score:.3f}")
    if row.label_prob is not None:
        parts.append(f"p {row.label_prob:.3f}")
    return " · ".join(parts)


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def sheet_size(count: int) -> tuple[int, int]:
    """Pixel size of the contact sheet of `count` rows (at least one empty cell)."""
    columns = max(1, min(count, SHEET_COLUMNS))
    return columns * CELL_SIZE[0], max(1, math.ceil(count / columns)) * CELL_SIZE[1]


def render_contact_sheet(rows: list[SampledRow]) -> Image.Image:
    """A grid of thumbnails, each with its key and its text (or error) under it."""
    sheet = Image.new("RGB", sheet_size(len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for index, row in enumerate(rows):
        column, line = index % SHEET_COLUMNS, index // SHEET_COLUMNS
        left, top = column * CELL_SIZE[0] + SHEET_PADDING, line * CELL_SIZE[1] + SHEET_PADDING
        _paste_thumbnail(sheet, draw, row, (left, top), font)
        below = top + SHEET_THUMBNAIL[1] + SHEET_PADDING
        caption = row.text if row.error is None else row.error
        draw.text((left, below), _fit(row.key, font), fill="black", font=font)
        colour = "#333" if row.error is None else "#c33"
        draw.text((left, below + SHEET_LINE), _fit(caption or "", font), fill=colour, font=font)
    return sheet


def _paste_thumbnail(
    sheet: Image.Image,
    draw: ImageDraw.ImageDraw,
    row: SampledRow,
    at: tuple[int, int],
    font: ImageFont.FreeTypeFont,
) -> None:
    """The row's thumbnail centred in its box, framed so white pages stand out; or a grey
    box saying there is no image."""
    width, height = SHEET_THUMBNAIL
    if row.thumbnail is None:
        draw.rectangle((*at, at[0] + width - 1, at[1] + height - 1), fill="#ddd")
        draw.text((at[0] + 4, at[1] + 4), "no image", fill="#555", font=font)
        return
    thumbnail = with_line_boxes(row).copy()
    thumbnail.thumbnail(SHEET_THUMBNAIL)
    corner = (at[0] + (width - thumbnail.width) // 2, at[1] + (height - thumbnail.height) // 2)
    sheet.paste(thumbnail, corner)
    frame = (
        corner[0] - 1,
        corner[1] - 1,
        corner[0] + thumbnail.width,
        corner[1] + thumbnail.height,
    )
    draw.rectangle(frame, outline="#ccc")


def _fit(text: str, font: ImageFont.FreeTypeFont) -> str:
    """`text` on one line, cut with an ellipsis to the thumbnail's width."""
    text = " ".join(text.split())[:200]  # no texts longer than a line is wide
    if font.getlength(text) <= SHEET_THUMBNAIL[0]:
        return text
    while text and font.getlength(text + "…") > SHEET_THUMBNAIL[0]:
        text = text[:-1]
    return text + "…"
