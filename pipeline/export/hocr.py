"""A page as hOCR, the HTML Tesseract and kraken write: an `ocr_page` with the image's
size, one text area and paragraph holding the page's `ocr_line`s (the run finds lines,
not blocks) and their `ocrx_word`s, every box in pixels (`bbox x0 y0 x1 y1`), and a
word's confidence (`x_wconf`, 0 to 100, as Tesseract's) where the run scored its line."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pipeline.export.committed_pages import PageText
from pipeline.export.words import line_confidence, split_words

XHTML = "http://www.w3.org/1999/xhtml"
DOCTYPE = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
    '    "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
)
CAPABILITIES = "ocr_page ocr_carea ocr_par ocr_line ocrx_word"


def _element(parent: ET.Element, tag: str, text: str | None = None, **attributes) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = text
    return element


def _bbox(x0: int, y0: int, x1: int, y1: int) -> str:
    return f"bbox {x0} {y0} {x1} {y1}"


def hocr_page(page: PageText) -> bytes:
    # Names unqualified under a plain xmlns: ElementTree's default_namespace refuses
    # unqualified attributes.
    html = ET.Element("html", xmlns=XHTML)
    head = _element(html, "head")
    _element(head, "title", page.source)
    _element(head, "meta", **{"http-equiv": "Content-Type", "content": "text/html;charset=utf-8"})
    _element(head, "meta", name="ocr-system", content="shardscribe")
    _element(head, "meta", name="ocr-capabilities", content=CAPABILITIES)
    body = _element(html, "body")
    source = page.source.replace('"', "'")  # the property's own quotes
    title = (
        f'image "{source}"; {_bbox(0, 0, page.width, page.height)}; '
        f"ppageno {page.number - 1}; scan_res {page.dpi} {page.dpi}"
    )
    ocr_page = _element(body, "div", **{"class": "ocr_page", "id": "page_1", "title": title})
    if page.lines:
        area = _bbox(*page.area())
        block = _element(
            ocr_page, "div", **{"class": "ocr_carea", "id": "block_1_1", "title": area}
        )
        paragraph = _element(block, "p", **{"class": "ocr_par", "id": "par_1_1", "title": area})
        for number, line in enumerate(page.lines, 1):
            _line(paragraph, number, line)
    ET.indent(html, space=" ")
    # <div></div>, not <div />: HTML parsers read the short form as an opening tag.
    markup = ET.tostring(html, encoding="unicode", short_empty_elements=False)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + DOCTYPE + markup + "\n").encode()


def _line(paragraph: ET.Element, number: int, line: dict) -> None:
    box = _bbox(line["x0"], line["y0"], line["x1"], line["y1"])
    attributes = {"class": "ocr_line", "id": f"line_1_{number}", "title": box}
    element = _element(paragraph, "span", **attributes)
    confidence = line_confidence(line)
    wconf = "" if confidence is None else f"; x_wconf {round(100 * confidence)}"
    for index, word in enumerate(split_words(line), 1):
        _element(
            element,
            "span",
            word.text,
            **{
                "class": "ocrx_word",
                "id": f"word_1_{number}_{index}",
                "title": _bbox(word.x0, word.y0, word.x1, word.y1) + wconf,
            },
        )
