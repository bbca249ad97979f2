"""Models shipped inside the package, trained here, usable offline by name:
`shardscribe/<name>` anywhere a model name goes (`--model shardscribe/printed-lines`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"
PREFIX = "shardscribe/"
DEFAULT_MODEL = PREFIX + "printed-lines"


@dataclass(frozen=True)
class BundledModel:
    name: str
    path: Path
    card: Path  # the model card (README.md) beside the weights

    def summary(self) -> dict:
        """What `shardscribe models --json` prints: name, path, size and the card's figures."""
        weights = self.path / "model.safetensors"
        figures = self.path / "evaluation.json"
        return {
            "name": self.name,
            "path": str(self.path),
            "weights_mb": round(weights.stat().st_size / 1e6, 1),
            "card": str(self.card),
            "evaluation": json.loads(figures.read_text()) if figures.exists() else None,
        }


def bundled_models() -> list[BundledModel]:
    return [
        BundledModel(PREFIX + path.name, path, path / "README.md")
        for path in sorted(WEIGHTS.glob("*"))
        if (path / "config.json").exists()
    ]


def resolve_model_name(name: str) -> str:
    """The local path of a bundled model's name; any other name is returned as is."""
    if not name.startswith(PREFIX):
        return name
    path = WEIGHTS / name.removeprefix(PREFIX)
    if not (path / "config.json").exists():
        known = ", ".join(model.name for model in bundled_models()) or "none"
        raise ValueError(f"no bundled model {name!r} (bundled: {known})")
    return str(path)
