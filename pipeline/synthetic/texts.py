"""What rendered lines say. Training text: the project's word list, prose from the
docstrings of Python's standard library, and generated numbers, dates, prices, phone
numbers, e-mail addresses, URLs and codes. Evaluation text: prose from Debian's
licence and documentation files, which no training line ever comes from.

Every line holds only characters of the bundled tokenizer's charset, and follows from
the random generator it is given.
"""

from __future__ import annotations

import ast
import random
import re
import string
import sysconfig
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Literal

from model.char_tokenizer import CHARSET

WORDS_FILE = Path(__file__).parent / "data" / "words.txt"
WordSplit = Literal["train", "heldout", "all"]
# Every 10th word of the list is kept out of training lines, for honest held-out tests.
HELDOUT_EVERY = 10
PUNCTUATION_AFTER = ",.;:!?"
RANDOM_CHARS = string.ascii_letters + string.digits + string.punctuation
EVALUATION_SOURCES = (Path("/usr/share/common-licenses"), Path("/usr/share/doc"))
_ALLOWED = set(CHARSET)
_SKIPPED_STDLIB = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo"}
_ACCENTED = {"e": "éè", "a": "àáä", "c": "ç", "u": "üú", "o": "öó", "n": "ñ", "i": "í"}


def word_list(split: WordSplit) -> list[str]:
    words = WORDS_FILE.read_text().split()
    if split == "all":
        return words
    heldout = split == "heldout"
    return [w for i, w in enumerate(words) if (i % HELDOUT_EVERY == HELDOUT_EVERY - 1) == heldout]


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, whitespace collapsed, only charset characters."""
    found = []
    for block in re.split(r"\n\s*\n", text):
        paragraph = " ".join(block.split())
        if len(paragraph) >= 20 and set(paragraph) <= _ALLOWED:
            found.append(paragraph)
    return found


@cache
def docstring_paragraphs() -> tuple[str, ...]:
    """Paragraphs of every docstring in the standard library (training prose)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found: list[str] = []
    for path in sorted(stdlib.rglob("*.py")):
        if _SKIPPED_STDLIB & set(path.relative_to(stdlib).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    found.extend(_paragraphs(doc))
    return tuple(found)


@cache
def evaluation_paragraphs() -> tuple[str, ...]:
    """Paragraphs of Debian's licence texts and package copyright files (never trained on)."""
    licences, docs = EVALUATION_SOURCES
    files = sorted(licences.glob("*")) + sorted(docs.glob("*/copyright"))
    found: list[str] = []
    for path in files:
        if path.is_file():
            found.extend(_paragraphs(path.read_text(encoding="utf-8", errors="replace")))
    return tuple(found)


def prose_line(paragraphs: tuple[str, ...], rng: random.Random, length: int) -> str:
    """About `length` characters of running prose, cut at word boundaries."""
    paragraph = rng.choice(paragraphs).split()
    start = rng.randrange(len(paragraph))
    words = paragraph[start:] + rng.choice(paragraphs).split()
    return fill_line(words, length)


def fill_line(words: list[str], length: int) -> str:
    line = words[0][:length]
    for word in words[1:]:
        if len(line) + 1 + len(word) > length:
            break
        line += " " + word
    return line


def _number(rng: random.Random) -> str:
    return rng.choice(
        [
            lambda: str(_int(rng, 99999)),
            lambda: f"{_int(rng, 9_999_999):,}",
            lambda: f"{_int(rng, 999)}.{_digits(rng, rng.randint(1, 3))}",
            lambda: f"{rng.randint(0, 100)}%",
            lambda: f"{rng.choice('+-')}{rng.uniform(0, 99):.1f}°",
            lambda: f"{rng.randint(1, 9)}/{rng.randint(2, 16)}",
        ]
    )()


def _price(rng: random.Random) -> str:
    amount = f"{_int(rng, 99999):,}.{_digits(rng, 2)}"
    return rng.choice([f"${amount}", f"€{amount}", f"£{amount}", f"{amount} EUR", f"USD {amount}"])


MONTHS = "January February March April May June July August September October November December"


def _date(rng: random.Random) -> str:
    year, month, day = rng.randint(1900, 2049), rng.randint(1, 12), rng.randint(1, 28)
    name = MONTHS.split()[month - 1]
    return rng.choice(
        [
            f"{year}-{month:02d}-{day:02d}",
            f"{day:02d}/{month:02d}/{year}",
            f"{day}.{month}.{year}",
            f"{day:02d}.{month:02d}.{year}",
            f"{month}/{day}/{str(year)[2:]}",
            f"{name} {day}, {year}",
            f"{day} {name[:3]} {year}",
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
            f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d} {rng.choice(['AM', 'PM', 'a.m.'])}",
        ]
    )


def _digits(rng: random.Random, count: int) -> str:
    """Random digits; a third of them repeat the one before (`1996`, `#17733`, `2,252,985`):
    runs of one digit are what a reader most often shortens."""
    digits = rng.choices(string.digits, k=count)
    for i in range(1, count):
        if rng.random() < 1 / 3:
            digits[i] = digits[i - 1]
    return "".join(digits)


def _int(rng: random.Random, high: int) -> int:
    """0 to `high`, its digits as `_digits` draws them."""
    return int(_digits(rng, len(str(high)))) % (high + 1)


def _phone(rng: random.Random) -> str:
    return rng.choice(
        [
            f"({_digits(rng, 3)}) {_digits(rng, 3)}-{_digits(rng, 4)}",
            f"+1 {_digits(rng, 3)}-{_digits(rng, 3)}-{_digits(rng, 4)}",
            f"+44 {_digits(rng, 2)} {_digits(rng, 4)} {_digits(rng, 4)}",
            f"{_digits(rng, 3)}.{_digits(rng, 3)}.{_digits(rng, 4)}",
            f"+49 {_digits(rng, 3)} {_digits(rng, 7)}",
        ]
    )


def _email(rng: random.Random, words: list[str]) -> str:
    user = rng.choice(words) + rng.choice(["", ".", "_"]) + rng.choice([*words, _digits(rng, 2)])
    domain = rng.choice(words) + rng.choice([".com", ".org", ".net", ".io", ".de", ".co.uk"])
    return f"{user.strip('._')}@{domain}"


def _url(rng: random.Random, words: list[str]) -> str:
    path = "/".join(rng.choice(words) for _ in range(rng.randint(0, 3)))
    host = rng.choice(["www.", "", "docs."]) + rng.choice(words) + rng.choice([".com", ".org"])
    return f"{rng.choice(['https://', 'http://', ''])}{host}/{path}".rstrip("/")


def _code(rng: random.Random) -> str:
    letters = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(1, 4)))
    return rng.choice(
        [
            f"{letters}-{_digits(rng, rng.randint(2, 6))}",
            f"{letters}{_digits(rng, rng.randint(1, 5))}",
            f"#{_digits(rng, rng.randint(1, 5))}",
            f"No. {_digits(rng, rng.randint(1, 4))}",
            f"{_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 4)}",
            "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(4, 12))),
        ]
    )


def _quoted(rng: random.Random, words: list[str]) -> str:
    inner = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
    left, right = rng.choice(['""', "''", "()", "[]", "{}", "<>", "“”", "‘’"])
    return f"{left}{inner}{right}"


def structured_token(rng: random.Random, words: list[str]) -> str:
    makers: list[Callable[[], str]] = [
        lambda: _number(rng),
        lambda: _price(rng),
        lambda: _date(rng),
        lambda: _phone(rng),
        lambda: _email(rng, words),
        lambda: _url(rng, words),
        lambda: _code(rng),
        lambda: _quoted(rng, words),
    ]
    return rng.choice(makers)()


def _typographic(line: str, rng: random.Random) -> str:
    """Curly quotes, dashes, ellipses and the odd accented letter, as real print has."""
    if rng.random() < 0.4:
        line = re.sub(r'"([^"]*)"', "“\\1”", line).replace("'", "’")
    if rng.random() < 0.4:
        line = line.replace(" - ", " – ").replace("--", "—").replace("...", "…")
    if rng.random() < 0.05:
        line = "• " + line
    if rng.random() < 0.1:
        chars = list(line)
        for i in rng.sample(range(len(chars)), k=min(len(chars), rng.randint(1, 2))):
            chars[i] = rng.choice(_ACCENTED.get(chars[i], chars[i]))
        line = "".join(chars)
    return line


def _cased(line: str, rng: random.Random) -> str:
    style = rng.random()
    if style < 0.06:
        return line.upper()
    if style < 0.12:
        return string.capwords(line)
    if style < 0.15:
        return line.lower()
    return line


def line_length(rng: random.Random, max_chars: int) -> int:
    """Mostly the lengths of document lines (40-90), with short labels and long lines."""
    low, high = rng.choice([(1, 12), (13, 40), (41, 75), (41, 75), (76, 100), (13, 100)])
    return rng.randint(min(low, max_chars), min(high, max_chars))


def numeric_line(rng: random.Random, words: list[str], length: int) -> str:
    """A line dense in numbers, dates, prices and codes, as tables and forms are, with a
    short word between them now and then."""
    tokens: list[str] = []
    while sum(len(t) + 1 for t in tokens) < length:
        if rng.random() < 0.25:
            tokens.append(rng.choice(words))
        else:
            tokens.append(rng.choice([_number, _price, _date, _code])(rng))
    return fill_line(" ".join(tokens).split(" "), length)


def doubled_letter_line(rng: random.Random, words: list[str], length: int) -> str:
    """Words with doubled letters, mixed with short words (`a`, `of`, `as a result`)."""
    doubled = [w for w in words if re.search(r"(\w)\1", w)] or words
    short = [w for w in words if len(w) <= 3] or words
    tokens: list[str] = []
    while sum(len(t) + 1 for t in tokens) < length:
        tokens.append(rng.choice(doubled if rng.random() < 0.6 else short))
    return fill_line(tokens, length)


def rule_line(rng: random.Random, words: list[str], length: int) -> str:
    """Runs of one mark, as separators and leaders print them (`-----`, `=====`,
    `Contents ........ 12`): a reader has to count them."""
    mark = rng.choice("-=_*.~#")
    if rng.random() < 0.5:
        return mark * max(3, length)
    label, number = rng.choice(words).capitalize(), str(rng.randint(1, 999))
    run = mark * max(3, length - len(label) - len(number) - 2)
    return rng.choice([f"{label} {run} {number}", f"{number} {run}", f"{label} {run}"])


def training_line(rng: random.Random, words: list[str], max_chars: int) -> str:
    """One line of training text: prose, words, structured tokens, digit-dense lines,
    doubled letters, or a mix of them."""
    length = line_length(rng, max_chars)
    kind = rng.random()
    if kind < 0.03:
        line = rule_line(rng, words, length)
    elif kind < 0.1:
        line = numeric_line(rng, words, length)
    elif kind < 0.18:
        line = doubled_letter_line(rng, words, length)
    elif kind < 0.5:
        line = prose_line(docstring_paragraphs(), rng, length)
    elif kind < 0.94:
        tokens = []
        while sum(len(t) + 1 for t in tokens) < length:
            if kind < 0.62 or rng.random() < 0.5:
                word = rng.choice(words)
                token = word + (rng.choice(PUNCTUATION_AFTER) if rng.random() < 0.15 else "")
            else:
                token = structured_token(rng, words)
            tokens.append(token)
        line = fill_line(" ".join(tokens).split(" "), length)
    else:
        line = "".join(rng.choices(RANDOM_CHARS + " ", k=length)).strip() or "x"
    return _typographic(_cased(line, rng), rng).strip()[:max_chars] or "-"
