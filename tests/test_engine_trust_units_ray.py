"""The trust stage's units on Ray store the local executor's numbers bit for bit (one
intra-op thread per process on both sides), and the stage writes the same tables."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from xaicompare.stages import trust as trust_stage  # noqa: E402
from xaicompare.stages.contexts import trust_context  # noqa: E402
from xaicompare.study import Study  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def config(folder, kind):
    return {
        "name": "trust-ray", "output": str(folder), "seed": 1,
        "dataset": {"name": "shapes", "options": {"split": "test", "n": 20, "size": 32},
                    "n_images": 3},
        "models": [{"source": "zoo:shapes-resnet"}, {"source": "zoo:shapes-pvt"}],
        "methods": {"gradcam": {}, "integrated_gradients": {"n_steps": 4}},
        "trust": {"faithfulness_images": 3, "faithfulness_steps": 2, "randomization": True,
                  "randomization_images": 3},
        "executor": {"kind": kind, "threads": 1, "batch_size": 2, "workers": 2},
    }


def stored(study, kind: str) -> dict:
    """Every array of the store's entries of `kind`, by entry folder and array name."""
    out = {}
    for entry in study.store.entries(kind):
        ids = list(entry.index)
        for name, values in entry.read(sorted(ids)).items():
            out[(entry.directory.name, name)] = values
    return out


def test_faithfulness_and_randomised_maps_on_ray_equal_the_local_ones(tmp_path):
    local = Study.from_dict(config(tmp_path / "local", "local"), progress=False)
    local.explain()
    # the same explained maps; the trust units of the Ray study start from nothing
    shutil.copytree(local.store.root, tmp_path / "ray" / "store")
    on_ray = Study.from_dict(config(tmp_path / "ray", "ray"), progress=False)
    tables = {}
    for study in (local, on_ray):
        trust_stage.faithfulness(trust_context(study))
        trust_stage.randomization(trust_context(study))
        tables[study.config.executor.kind] = [
            pd.read_csv(study.run_dir / f"tables/trust/{name}.csv", comment="#")
            for name in ("faithfulness", "randomization")]
    for kind in ("faithfulness", "randomized_maps"):
        here, there = stored(local, kind), stored(on_ray, kind)
        assert here and here.keys() == there.keys()
        for key, values in here.items():
            np.testing.assert_array_equal(values, there[key], err_msg=str(key))
    for here, there in zip(tables["local"], tables["ray"], strict=True):
        pd.testing.assert_frame_equal(here, there, check_exact=True)
