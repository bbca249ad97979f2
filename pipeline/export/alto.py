"""A page as ALTO v4 XML (the Library of Congress's layout format, read by digital
library tools): `Page` with the image's size, one `TextBlock` holding the page's
`TextLine`s (the run finds lines, not blocks), their words as `String`s with `SP`
between, positions in pixels (`MeasurementUnit` pixel), the dpi in the processing
step's settings, a word's confidence (`WC`, 0 to 1) where the run scored its line. A
line read as nothing keeps its box with one empty `String`."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pipeline.export.committed_pages import PageText
from pipeline.export.words import Word, line_confidence, split_words

ALTO = "http://www.loc.gov/standards/alto/ns-v4#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA = f"{ALTO} http://www.loc.gov/alto/v4/alto-4-2.xsd"


def _element(parent: ET.Element, tag: str, text: str | None = None, **attributes) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = text
    return element


def _position(x0: int, y0: int, x1: int, y1: int) -> dict[str, str]:
    return {"HPOS": str(x0), "VPOS": str(y0), "WIDTH": str(x1 - x0), "HEIGHT": str(y1 - y0)}


def alto_page(page: PageText) -> bytes:
    # Names unqualified under a plain xmlns: ElementTree's default_namespace refuses
    # unqualified attributes.
    alto = ET.Element("alto", {"xmlns": ALTO, f"{{{XSI}}}schemaLocation": SCHEMA})
    description = _element(alto, "Description")
    _element(description, "MeasurementUnit", "pixel")
    _element(_element(description, "sourceImageInformation"), "fileName", page.source)
    step = _element(_element(description, "OCRProcessing", ID="OCR_0"), "ocrProcessingStep")
    settings = f"page {page.number}; pixels of the page at {page.dpi} dpi"
    _element(step, "processingStepSettings", settings)
    _element(_element(step, "processingSoftware"), "softwareName", "shardscribe")
    layout = _element(alto, "Layout")
    size = {"WIDTH": str(page.width), "HEIGHT": str(page.height)}
    sheet = _element(layout, "Page", ID="page_1", PHYSICAL_IMG_NR=str(page.number), **size)
    space = _element(sheet, "PrintSpace", **_position(0, 0, page.width, page.height))
    if page.lines:
        block = _element(space, "TextBlock", ID="block_1", **_position(*page.area()))
        for number, line in enumerate(page.lines, 1):
            _line(block, number, line)
    ET.indent(alto, space=" ")
    markup = ET.tostring(alto, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + markup + "\n").encode()


def _line(block: ET.Element, number: int, line: dict) -> None:
    box = (line["x0"], line["y0"], line["x1"], line["y1"])
    element = _element(block, "TextLine", ID=f"line_{number}", **_position(*box))
    words = split_words(line) or [Word("", *box)]
    confidence = line_confidence(line)
    scored = {} if confidence is None else {"WC": f"{confidence:.4f}"}
    for index, word in enumerate(words, 1):
        if index > 1:
            left = words[index - 2].x1
            _element(element, "SP", HPOS=str(left), VPOS=str(word.y0), WIDTH=str(word.x0 - left))
        _element(
            element,
            "String",
            ID=f"string_{number}_{index}",
            CONTENT=word.text,
            **_position(word.x0, word.y0, word.x1, word.y1),
            **scored,
        )
