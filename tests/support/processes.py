"""The machine's processes from /proc (proc(5)): who started whom, and what each costs.

Tests use it to find and end what a run or a cluster left behind; the scale benchmark
sums CPU time by process role.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    session: int
    started: int  # clock ticks after boot: with the pid, identifies the process
    zombie: bool
    command: str  # the command line, arguments joined by spaces
    cwd: str  # "" where it cannot be read
    cpu_s: float  # user + system, its reaped children's included
    own_cpu_s: float  # user + system of the process alone


def process_info(pid: int) -> ProcessInfo | None:
    """One process, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = ""
    fields = stat[stat.rindex(")") + 2 :].split()  # fields 3 (state) and on
    return ProcessInfo(
        pid=pid,
        ppid=int(fields[1]),
        session=int(fields[3]),
        started=int(fields[19]),
        zombie=fields[0] == "Z",
        command=cmdline.replace(b"\0", b" ").decode(errors="replace").strip(),
        cwd=cwd,
        cpu_s=sum(int(ticks) for ticks in fields[11:15]) / CLOCK_TICKS,
        own_cpu_s=sum(int(ticks) for ticks in fields[11:13]) / CLOCK_TICKS,
    )


def all_processes() -> dict[int, ProcessInfo]:
    """Every process on the machine, by pid."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (info := process_info(int(entry.name))):
            found[info.pid] = info
    return found


def with_descendants(table: dict[int, ProcessInfo], roots: set[int]) -> set[int]:
    """`roots` and every process in `table` descended from one of them."""
    members = set(roots)
    while children := {pid for pid, info in table.items() if info.ppid in members} - members:
        members |= children
    return members


def still_running(seen: ProcessInfo) -> bool:
    """Whether a process seen earlier is still alive: the same one (same start time, not a
    new process that got its pid; Ray workers rename themselves, so not the command)."""
    now = process_info(seen.pid)
    return now is not None and not now.zombie and now.started == seen.started
