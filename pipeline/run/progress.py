"""Progress: a live bar on a terminal, a one-line summary at an interval in logs."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from tqdm import tqdm

log = logging.getLogger(__name__)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Counts shards and images as they commit; shows them without escape codes when
    stderr is not a terminal (`ray job logs`, CI). `export` counts pages exported."""

    def __init__(
        self,
        shards_total: int,
        log_interval_s: float,
        interactive: bool | None = None,
        unit: str = "images",
        done: str = "committed",
    ):
        self.shards_total = shards_total
        self.unit, self.done = unit, done
        self.shards_done = 0
        self.shards_failed = 0
        self.images = 0
        self.start = time.monotonic()
        self.interval = log_interval_s
        self.last_log = self.start
        interactive = sys.stderr.isatty() if interactive is None else interactive
        self.bar = (
            tqdm(total=shards_total, unit="shard", dynamic_ncols=True) if interactive else None
        )

    @property
    def images_per_s(self) -> float:
        return self.images / max(time.monotonic() - self.start, 1e-9)

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        finished = self.shards_done + self.shards_failed
        eta = _duration(elapsed / finished * (self.shards_total - finished)) if finished else "?"
        return (
            f"{self.shards_done}/{self.shards_total} shards {self.done}, "
            f"{self.shards_failed} failed, {self.images} {self.unit}, "
            f"{rate_text(self.images_per_s)} {self.unit}/s, elapsed {_duration(elapsed)}, eta {eta}"
        )

    def shard_committed(self, images: int) -> None:
        self.shards_done += 1
        self.images += images
        self._update()

    def shard_failed(self) -> None:
        self.shards_failed += 1
        self._update()

    def _update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)
            rate = rate_text(self.images_per_s)
            self.bar.set_postfix({self.unit: self.images, f"{self.unit}/s": rate})
        self.tick()

    def tick(self, slow_shards: Callable[[], list[str]] = list) -> None:
        """Log a progress line if the interval has passed (non-terminal only), naming the
        shards `slow_shards` gives."""
        now = time.monotonic()
        if self.bar is None and now - self.last_log >= self.interval:
            self.last_log = now
            slow = slow_shards()
            suffix = f"; in flight unusually long: {', '.join(slow[:5])}" if slow else ""
            log.info("progress: %s%s", self.line(), suffix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def rate_text(per_s: float) -> str:
    """A rate with one decimal, or two significant digits below 1/s (pages read slowly)."""
    return f"{per_s:.1f}" if per_s >= 1 or per_s == 0 else f"{per_s:.2g}"
