"""The local Ray a run starts dies with the run, however the run ends.

Ray ties its head processes to the driver, but when the driver is SIGKILLed its dashboard
and runtime-env agents, and a worker busy importing, outlive it. The driver starts this
reaper in a session of its own, holding the write end of a pipe. While the driver lives,
the reaper notes the driver's descendants twice a second; every process of the local Ray
also inherits a token the driver put in its environment (which catches one started after
the last look, unless it renamed itself over its environment, as Ray's agents do). When
the driver is gone (exit, crash or SIGKILL alike), the pipe reads end of file and the
reaper SIGKILLs both. Linux /proc, standard library only: it starts in milliseconds.

    python -m pipeline.reaper TOKEN        (stdin: the pipe; started by `start_reaper`)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

MARK = "SHARDSCRIBE_LOCAL_RAY"
SETTLE_S = 10.0  # how long processes still appearing (a raylet starting a worker) are chased
LOOK_EVERY_S = 0.5


_reaper: subprocess.Popen | None = None  # its stdin must stay open as long as we live


def start_reaper() -> None:
    """Mark this process's environment, so the Ray it starts next inherits the mark, and
    start the reaper that ends those processes once this one is gone."""
    global _reaper
    token = secrets.token_hex(8)
    os.environ[MARK] = token
    env = {name: value for name, value in os.environ.items() if name != MARK}
    _reaper = subprocess.Popen(
        [sys.executable, "-m", "pipeline.reaper", token],
        stdin=subprocess.PIPE,  # kept open by this process until it ends
        env=env,
        start_new_session=True,  # outlives a kill of this process's group
        close_fds=True,
    )


def _stat(pid: str) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, None if gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def descendants(root: int) -> dict[int, int]:
    """{pid: start time} of every live descendant of `root`."""
    table = {
        int(e.name): stat
        for e in os.scandir("/proc")
        if e.name.isdigit() and (stat := _stat(e.name))
    }
    found: dict[int, int] = {}
    parents = {root}
    while parents:
        children = {pid for pid, (ppid, _) in table.items() if ppid in parents} - found.keys()
        found |= {pid: table[pid][1] for pid in children}
        parents = children
    found.pop(os.getpid(), None)
    return found


def marked(token: str) -> dict[int, int]:
    """{pid: start time} of the live processes whose environment carries `token`."""
    needle = f"{MARK}={token}".encode()
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as environ:
                carries = needle in environ.read().split(b"\0")
        except OSError:
            continue  # gone, or not ours
        if carries and (stat := _stat(entry.name)):
            found[int(entry.name)] = stat[1]
    return found


def _alive(seen: dict[int, int]) -> dict[int, int]:
    """Those of `seen` still running: the same process, not a new one with its pid."""
    return {pid: t for pid, t in seen.items() if (stat := _stat(str(pid))) and stat[1] == t}


def reap(token: str, seen: dict[int, int]) -> None:
    deadline = time.monotonic() + SETTLE_S
    while (left := _alive(seen) | marked(token)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                os.kill(pid, signal.SIGKILL)
        seen |= left
        time.sleep(0.2)


def main(token: str) -> None:
    driver = os.getppid()
    seen: dict[int, int] = {}
    while True:
        seen = _alive(seen) | descendants(driver)
        readable = select.select([sys.stdin], [], [], LOOK_EVERY_S)[0]
        if readable and not os.read(sys.stdin.fileno(), 4096):
            break  # end of file: the driver is gone (nothing is ever written)
    reap(token, seen)


if __name__ == "__main__":
    main(sys.argv[1])
