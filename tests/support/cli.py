"""The `shardscribe` command as users run it: a subprocess of this interpreter."""

from __future__ import annotations

import subprocess
import sys


def shardscribe(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """`shardscribe ARGS...` (as `python -m jobs`), its exit code and output captured."""
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
