"""Two runs on one run folder: the second stops at once with a UserError naming the holder;
a killed holder never leaves a stale lock (the kernel drops a flock when its process dies)."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest
import yaml

from xaicompare.cli import main
from xaicompare.engine.lock import LOCK_NAME, run_lock
from xaicompare.errors import UserError

FORK = multiprocessing.get_context("fork")  # the holder only takes a lock: no torch use


def _hold(run_dir: str, ready, release) -> None:
    with run_lock(run_dir):
        ready.set()
        release.wait(60)


def start_holder(run_dir):
    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(str(run_dir), ready, release))
    holder.start()
    assert ready.wait(30), "holder never took the lock"
    return holder, release


def write_study(tmp_path):
    run_dir = tmp_path / "run"
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "name": "locked", "output": str(run_dir),
        "dataset": {"name": "shapes", "options": {"split": "test", "n": 4, "size": 32}},
        "models": [{"source": "test_resnet", "pretrained": False, "num_classes": 10,
                    "class_indices": None}],
        "methods": {"gradcam": {}}}))
    return study, run_dir


def test_second_cli_run_stops_with_one_line_naming_the_holder(tmp_path, capsys):
    study, run_dir = write_study(tmp_path)
    holder, release = start_holder(run_dir)
    try:
        assert main(["explain", str(study), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "another xaicompare run holds the lock" in err
        assert str(run_dir) in err and f"pid {holder.pid}" in err
        assert not (run_dir / "store").exists()  # it stopped before touching anything
    finally:
        release.set()
        holder.join(30)
    assert holder.exitcode == 0


def test_killed_holder_leaves_no_stale_lock(tmp_path):
    holder, _ = start_holder(tmp_path)
    with pytest.raises(UserError, match="holds the lock"), run_lock(tmp_path):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)
    assert holder.exitcode == -signal.SIGKILL
    assert (tmp_path / LOCK_NAME).exists()  # the file stays; the lock does not
    with run_lock(tmp_path):  # taken at once, no cleanup needed
        with pytest.raises(UserError, match=f"pid {os.getpid()}"), run_lock(tmp_path):
            pass
    with run_lock(tmp_path):  # released again on leaving the block
        pass
