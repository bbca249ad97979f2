"""The font families `shardscribe synth` renders with: every TrueType / OpenType font
installed on the machine (`infra/install-fonts.sh` installs the ones the bundled
model was trained on) that draws Latin text, grouped by family, less the families
held out for evaluation.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from functools import cache
from pathlib import Path

from PIL import ImageFont

log = logging.getLogger(__name__)

FONT_DIRS = (
    Path("/usr/share/fonts"),
    Path("/usr/share/texmf/fonts/opentype"),  # Debian's fonts-texgyre
    Path("/usr/local/share/fonts"),
    Path.home() / ".fonts",
)
# Never trained on: the bundled model's benchmark reads these families to measure how it
# does on type it has not seen (serif, book, geometric sans). A name also holds out the
# families it begins ("Noto Serif" holds out "Noto Serif Display Condensed"), and the
# TeX Gyre clones of the held-out URW designs go with them.
HELDOUT_FAMILIES = (
    "C059",
    "P052",
    "URW Bookman",
    "URW Gothic",
    "Noto Serif",
    "Noto Serif Display",
    "TeX Gyre Schola",
    "TeX Gyre Pagella",
    "TeX Gyre Bonum",
    "TeX Gyre Adventor",
)
# Fonts that map Latin code points to other symbols (Greek, dingbats, math, music, key
# caps, drop capitals).
_NOT_TEXT = (
    *("Symbol", "Dingbats", "D050000L", "Math", "Music"),
    *("Keyboard", "Initials", "NonUnicode"),
)
_PROBE = "aAgQ09&@"
_MISSING = "\ue000"  # a private-use code point: every font draws its "missing" box


def _draws_latin(path: Path) -> bool:
    """Every probe letter has its own glyph (not the font's missing-glyph box)."""
    font = ImageFont.truetype(str(path), 24)

    def bitmap(char: str) -> tuple[tuple[int, int], bytes]:
        mask = font.getmask(char)
        return mask.size, bytes(mask)

    missing = bitmap(_MISSING)
    return all(bitmap(char) != missing for char in _PROBE)


@cache
def installed_families() -> dict[str, tuple[str, ...]]:
    """Family name -> its font files (regular, bold, italic, condensed ... alike), sorted."""
    families: dict[str, list[str]] = defaultdict(list)
    files = sorted(
        path
        for root in FONT_DIRS
        if root.is_dir()
        for path in root.rglob("*")
        if path.suffix.lower() in (".ttf", ".otf")
    )
    for path in files:
        try:
            family = ImageFont.truetype(str(path), 24).getname()[0]
        except OSError as error:
            log.warning("skipping font %s: %s", path, error)
            continue
        if family and not any(word in family for word in _NOT_TEXT) and _draws_latin(path):
            families[family].append(str(path))
    return {family: tuple(paths) for family, paths in sorted(families.items())}


def font_split(
    families: dict[str, tuple[str, ...]], split: str = "train"
) -> dict[str, tuple[str, ...]]:
    """The training families (`train`), the held-out ones (`heldout`) or all (`all`)."""
    return {
        family: paths
        for family, paths in families.items()
        if split == "all" or is_heldout(family) == (split == "heldout")
    }


def is_heldout(family: str) -> bool:
    return any(family == name or family.startswith(name + " ") for name in HELDOUT_FAMILIES)
