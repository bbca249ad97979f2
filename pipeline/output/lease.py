"""One run at a time per output: a lease object in the ledger, re-read before each commit.

Object stores have no locks, so the lease is an object `_shardscribe/lease.json` with an
owner and an expiry. A run takes it when it is absent, expired, or left by a dead process
on this host; it renews it from a heartbeat thread; it re-reads it before every commit
and stops if another run has taken it. A second run started on a busy output is refused
with a message naming the holder. Even if two runs did overlap, each shard is one file
written atomically, so the worst case is a shard written twice with the same rows.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import fsspec

from pipeline.exceptions import OutputBusyError
from pipeline.output.layout import LEASE_FILE, LEDGER_DIR
from pipeline.storage import join, write_atomically

log = logging.getLogger(__name__)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


LEASE_MAX_BYTES = 1 << 16  # a lease record is a line of JSON, far below this


class OutputLease:
    """The right to write one output, held for `ttl_s` seconds at a time."""

    def __init__(self, fs: fsspec.AbstractFileSystem, output_root: str, ttl_s: float):
        self.fs = fs
        self.root = output_root
        self.path = join(output_root, LEDGER_DIR, LEASE_FILE)
        self.ttl_s = ttl_s
        self.owner = uuid.uuid4().hex
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _read(self) -> dict[str, Any] | None:
        """The lease as stored, in one GET: a range past its end gives the whole file,
        where a plain read first asks for its size (a HEAD on S3, before every commit)."""
        try:
            return json.loads(self.fs.cat_file(self.path, start=0, end=LEASE_MAX_BYTES))
        except FileNotFoundError:
            return None

    def _write(self) -> None:
        record = {
            "owner": self.owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "expires": time.time() + self.ttl_s,
        }
        write_atomically(self.fs, self.path, json.dumps(record).encode())

    def _free(self, lease: dict[str, Any] | None) -> bool:
        if lease is None or lease["owner"] == self.owner or lease["expires"] < time.time():
            return True
        return lease["host"] == socket.gethostname() and not _process_alive(lease["pid"])

    def _busy_error(self, lease: dict[str, Any]) -> OutputBusyError:
        left = max(0, round(lease["expires"] - time.time()))
        return OutputBusyError(
            f"output {self.root} is in use by another run (host {lease['host']}, pid "
            f"{lease['pid']}); its lease expires in {left}s unless renewed. Wait for that run "
            f"to finish, or delete {self.path} if you are sure it is gone"
        )

    def acquire(self) -> None:
        """Take the lease or raise OutputBusyError; then keep it alive in the background."""
        current = self._read()
        if not self._free(current):
            raise self._busy_error(current)
        self._write()
        # Two runs that both saw a free lease both wrote: the last writer wins.
        confirmed = self._read()
        if confirmed is None or confirmed["owner"] != self.owner:
            raise self._busy_error(confirmed or current)
        self._heartbeat = threading.Thread(target=self._renew_forever, daemon=True)
        self._heartbeat.start()

    def _renew_forever(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                self._write()
            except OSError as error:  # a missed renewal is retried; the check before commit decides
                log.warning("could not renew the output lease: %s", error)

    def check(self) -> None:
        """Before a commit: stop if another run has taken the output over."""
        current = self._read()
        if current is not None and current["owner"] != self.owner:
            raise self._busy_error(current)

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        current = self._read()
        if current is not None and current["owner"] == self.owner:
            self.fs.rm_file(self.path)
