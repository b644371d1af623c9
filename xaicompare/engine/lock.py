"""One run at a time per run folder: an OS-level lock on `<run dir>/.xaicompare.lock`.

The lock is `fcntl.flock` on an open file, so the kernel releases it when the holder exits
for any reason (including SIGKILL): a crashed run never leaves a stale lock behind. A
second run on the same folder does not wait; it stops at once with a UserError that names
the holder (pid, start time), because two runs writing one store would duplicate work and
race on its files. The file's text (pid, start time, host) is only for that message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError
from ..files import UNWRITABLE, unwritable_folder_error

LOCK_NAME = ".xaicompare.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "pid unknown"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run folder's lock for the duration of the block; UserError if another holds it."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        if err.errno in UNWRITABLE:
            raise unwritable_folder_error(run_dir, err) from None
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another xaicompare run holds the lock on '{run_dir}' ({_holder(path)}); "
                "wait for it to finish or use another output folder") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        with contextlib.suppress(OSError):  # the holder's note is informative only
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock
