"""An earlier OCR's text layer taken off a page, as OCRmyPDF's --redo-ocr does, so the run's
text replaces it instead of joining it: every text-showing operator in a render mode
that paints nothing (3, and 7, which only clips) is dropped, in the page's content and
in the form XObjects it draws. Nothing shown changes; the text state operators stay."""

from __future__ import annotations

import pikepdf

SHOWS = {"Tj", "TJ", "'", '"'}
INVISIBLE_MODES = (3, 7)


def remove_invisible_text(pdf: pikepdf.Pdf, page: pikepdf.Page) -> int:
    """Drop the page's invisible text; returns how many text-showing operators went."""
    instructions = pikepdf.parse_content_stream(page)
    kept, removed = _strip(pdf, instructions, page.obj.get("/Resources"), 0, set())
    if removed:
        page.obj.Contents = pdf.make_stream(pikepdf.unparse_content_stream(kept))
    return removed


def _strip(
    pdf: pikepdf.Pdf,
    instructions: list,
    resources: pikepdf.Dictionary | None,
    mode: int,
    seen: set[tuple[int, int]],
) -> tuple[list, int]:
    """The instructions without invisible shows, and how many went. `mode`: the render
    mode they start in (a form inherits its caller's); q and Q save and restore it."""
    kept, removed, saved = [], 0, []
    for operands, operator in instructions:
        name = str(operator)
        if name == "q":
            saved.append(mode)
        elif name == "Q" and saved:
            mode = saved.pop()
        elif name == "Tr" and operands:
            mode = int(operands[0])
        elif name in SHOWS and mode in INVISIBLE_MODES:
            removed += 1
            # ' and " also move to the next line (and " sets the spacing): that stays.
            if name == "'":
                kept.append(([], pikepdf.Operator("T*")))
            elif name == '"':
                kept.append(([operands[0]], pikepdf.Operator("Tw")))
                kept.append(([operands[1]], pikepdf.Operator("Tc")))
                kept.append(([], pikepdf.Operator("T*")))
            continue
        elif name == "Do" and operands:
            removed += _strip_form(pdf, resources, operands[0], mode, seen)
        kept.append((operands, operator))
    return kept, removed


def _strip_form(
    pdf: pikepdf.Pdf,
    resources: pikepdf.Dictionary | None,
    name: pikepdf.Name,
    mode: int,
    seen: set[tuple[int, int]],
) -> int:
    """Strip a form XObject the content draws (each form once: a form drawn twice, or
    drawing itself, is not walked again)."""
    xobjects = resources.get("/XObject") if resources is not None else None
    form = xobjects.get(name) if xobjects is not None else None
    if not isinstance(form, pikepdf.Stream) or form.get("/Subtype") != pikepdf.Name.Form:
        return 0
    if form.objgen in seen:
        return 0
    seen.add(form.objgen)
    instructions = pikepdf.parse_content_stream(form)
    kept, removed = _strip(pdf, instructions, form.get("/Resources", resources), mode, seen)
    if removed:
        form.write(pikepdf.unparse_content_stream(kept))
    return removed
