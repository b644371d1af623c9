"""Heartbeat files: which model and images a process is explaining, and its memory.

The system can kill a run without a word (the kernel's out-of-memory killer sends SIGKILL;
a segfault ends the process the same way): no Python code runs, no error is written. So
before each unit a process writes `<store>/.running/<host>-<pid>.json` (model, images,
resident memory now and at its peak), rewrites it every few seconds while the unit runs and
removes it when the unit ends. A file whose process is gone is a unit that was killed: the
next run (or the Ray driver, when a worker dies) says so in one line and removes the file.
Finished units are in the store, so the next run resumes from there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..store import atomic_write
from .memory import format_bytes

log = logging.getLogger("xaicompare")

FOLDER = ".running"
INTERVAL_S = 2.0
STALE_S = 60.0  # another host's file not rewritten for this long: its process is gone


def peak_rss() -> int:
    """The process's largest resident memory so far, in bytes."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes; Linux: KiB


def _memory() -> dict:
    import psutil

    rss = int(psutil.Process().memory_info().rss)
    return {"rss": rss, "peak_rss": max(rss, peak_rss())}


class Heartbeat:
    """Writes this process's heartbeat file while a unit runs (see the module docstring)."""

    def __init__(self, store_root: Path, interval: float = INTERVAL_S) -> None:
        self.folder = Path(store_root) / FOLDER
        self.path = self.folder / f"{socket.gethostname()}-{os.getpid()}.json"
        self.interval = interval
        self.state: dict | None = None
        self.lock = threading.Lock()

    def _write(self) -> None:
        with self.lock:
            if self.state is None:
                return
            record = {**self.state, **_memory(), "pid": os.getpid(),
                      "host": socket.gethostname(), "updated": time.time()}
            text = json.dumps(record)
            with contextlib.suppress(OSError):  # a heartbeat must never stop the run
                atomic_write(self.path, lambda h: h.write(text.encode()))

    @contextlib.contextmanager
    def unit(self, model: str, images: str, stage: str = "explain") -> Iterator[None]:
        """Mark `model` on `images` as running for the block."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state = {"model": model, "images": images, "stage": stage, "started": time.time()}
        self._write()
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.interval):
                self._write()

        thread = threading.Thread(target=beat, daemon=True, name="xaicompare-heartbeat")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with self.lock:
                self.state = None
                self.path.unlink(missing_ok=True)


def _process_gone(record: dict) -> bool:
    """Its process no longer runs (same host: by pid), or it stopped beating long ago."""
    if time.time() - float(record.get("updated", 0)) > STALE_S:
        return True
    pid = record.get("pid")
    if record.get("host") != socket.gethostname() or pid == os.getpid():
        return False
    import psutil

    try:  # a killed child not yet reaped by its parent is a zombie: gone as well
        return not isinstance(pid, int) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def killed_units(store_root: Path) -> list[dict]:
    """Heartbeat records of processes that died inside a unit (their files are removed)."""
    folder = Path(store_root) / FOLDER
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a file being rewritten: its process is alive
        if isinstance(record, dict) and _process_gone(record):
            found.append(record)
            path.unlink(missing_ok=True)
    return found


def kill_message(record: dict, who: str = "the last run") -> str:
    """One line: which model and images, the memory in use, and what happens next."""
    return (f"{who} was killed while explaining model '{record.get('model')}' on images "
            f"{record.get('images')} (process {record.get('pid')}, "
            f"{format_bytes(record.get('rss', 0))} resident, peak "
            f"{format_bytes(record.get('peak_rss', 0))}): most likely the system's "
            "out-of-memory killer (or a crash); finished units are in the store and this run "
            "resumes from there; if it happens again, set executor.memory to a size below "
            "the machine's free memory (e.g. 8GB) or lower executor.batch_size")


def report_killed(store_root: Path, who: str = "the last run") -> list[dict]:
    """Warn once per killed unit found in the store's heartbeat folder."""
    records = killed_units(store_root)
    for record in records:
        log.warning(kill_message(record, who))
    return records
