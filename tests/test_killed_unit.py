"""A run the system kills (SIGKILL: the out-of-memory killer, a segfault) is named in one
line by the next run, which resumes from the store."""

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from fakes import FakeImages, tiny_cnn

from xaicompare.engine.heartbeat import FOLDER, Heartbeat, killed_units
from xaicompare.engine.runner import run_explanations
from xaicompare.store import Store

TESTS = Path(__file__).parent
METHODS = {"gradcam": {}, "integrated_gradients": {"n_steps": 4}}

# Runs the explain stage on 4 images in shards of 2; the second shard's first method call
# kills its own process with SIGKILL, as the kernel's out-of-memory killer would.
KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from fakes import FakeImages, tiny_cnn
    from xaicompare.engine import units
    from xaicompare.engine.runner import run_explanations
    from xaicompare.store import Store

    original, calls = units.explain_full, []

    def explain_then_die(model, images, method, *args, **kwargs):
        calls.append(method)
        if len(calls) == 3:  # shard 2 (img2..img3), its first method
            os.kill(os.getpid(), signal.SIGKILL)
        return original(model, images, method, *args, **kwargs)

    units.explain_full = explain_then_die
    run_explanations([tiny_cnn()], FakeImages(4, 12, np.arange(4) % 3),
                     {"gradcam": {}, "integrated_gradients": {"n_steps": 4}},
                     Store(sys.argv[1]), dataset_identity={"name": "fake"}, batch_size=2,
                     progress=False)
""")


def test_a_killed_unit_is_named_by_the_next_run_which_resumes(tmp_path, caplog):
    store = tmp_path / "store"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(TESTS)])}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(store)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(list((store / FOLDER).glob("*.json"))) == 1  # its heartbeat stayed behind

    with caplog.at_level(logging.WARNING, logger="xaicompare"):
        summary = run_explanations([tiny_cnn()], FakeImages(4, 12, np.arange(4) % 3), METHODS,
                                   Store(store), dataset_identity={"name": "fake"},
                                   batch_size=2, progress=False)
    lines = [r.getMessage() for r in caplog.records if "was killed" in r.getMessage()]
    assert len(lines) == 1
    assert "model 'tiny' on images img2..img3" in lines[0]
    assert re.search(r" [0-9.]+ [KMG]?B resident, peak ", lines[0]) and "resumes" in lines[0]
    assert "executor.memory" in lines[0]
    # the first shard was stored before the kill: only the second is computed now
    assert summary.skipped["tiny/gradcam"] == 2 and summary.computed["tiny/gradcam"] == 2
    assert summary.skipped["tiny/logits"] == 4  # stored before its methods ran
    assert not list((store / FOLDER).glob("*.json"))  # reported once, then removed


def test_a_running_unit_is_not_reported_and_its_file_goes_when_it_ends(tmp_path):
    beat = Heartbeat(tmp_path, interval=0.01)
    with beat.unit("m", "a..b"):
        assert beat.path.is_file()
        assert killed_units(tmp_path) == []  # this process is alive
    assert not beat.path.exists()
