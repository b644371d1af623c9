"""Worker processes for training many models at once: a process pool that stops with its
parent (killed, or stopped by a job scheduler's SIGTERM), and an inline executor for one."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any


def stop_workers(pool: Executor) -> None:
    """Cancel what has not started and end the worker processes now, not after their model."""
    if isinstance(pool, ProcessPoolExecutor):
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)


@contextmanager
def sigterm_as_exit(active: bool) -> Iterator[None]:
    """SIGTERM (a job scheduler's stop) raises SystemExit here, so the workers are stopped."""
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_with_parent(parent: int) -> None:
    """Worker initializer: exit when the process that started the run is gone (killed -9)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class InlineExecutor(Executor):
    """An executor that runs each job at once in this process (workers=1: no spawn cost)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # noqa: BLE001  (delivered through the future)
            future.set_exception(error)
        return future
