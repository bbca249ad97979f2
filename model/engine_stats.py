"""What the model computed: decoder rows that were live against rows computed, rows per
decode step and per encoder call. The same counters for static `generate` and for the
continuous engine, so a run (and `shardscribe bench`) can put them side by side."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields


@dataclass
class EngineStats:
    decoder_steps: int = 0  # decode steps (static: every step of generate)
    decoder_rows: int = 0  # rows the decoder computed, over steps and admissions
    live_rows: int = 0  # of those, rows whose text had not ended
    encoder_calls: int = 0
    encoder_rows: int = 0
    admitted_rows: int = 0  # rows whose first token an admission pass computed (continuous)
    images: int = 0  # rows the actor received pixels for
    pixel_bytes: int = 0  # and the bytes of those pixels
    # Seconds on the model thread: pixels onto the device, the encoder (where it runs
    # apart from `generate`), and decoding (`generate`, with its encoder where it runs it).
    preprocess_s: float = 0.0
    encoder_s: float = 0.0
    decoder_s: float = 0.0

    def add(self, other: EngineStats | dict) -> None:
        values = other if isinstance(other, dict) else asdict(other)
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + (values[field.name] or 0))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def figures(self) -> dict[str, float | None]:
        """occupancy (live rows / computed rows), rows_per_step, rows_per_encoder_call,
        pixel_bytes_per_image, and the model thread's seconds by step."""

        def ratio(a: int, b: int) -> float | None:
            return round(a / b, 3) if b else None

        return {
            "occupancy": ratio(self.live_rows, self.decoder_rows),
            # decode steps alone: an admission's rows are counted with their encoding
            "rows_per_step": ratio(self.decoder_rows - self.admitted_rows, self.decoder_steps),
            "rows_per_encoder_call": ratio(self.encoder_rows, self.encoder_calls),
            "pixel_bytes_per_image": ratio(self.pixel_bytes, self.images),
            "preprocess_s": round(self.preprocess_s, 2),
            "encoder_s": round(self.encoder_s, 2),
            "decoder_s": round(self.decoder_s, 2),
        }


class StatsCounter:
    """Counters several threads add to; `take` hands out what was added since last time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = EngineStats()

    def add(self, **counts: float) -> None:
        with self._lock:
            self._stats.add(EngineStats(**counts))

    def take(self) -> EngineStats:
        with self._lock:
            taken, self._stats = self._stats, EngineStats()
        return taken
