"""A method registered from outside the package, in one definition, runs through a whole
study with no other edit: the explain stage locally and on Ray (the same stored maps), the
store, compare, cluster, trust (faithfulness and the randomisation test) and the report,
whose atlas colours it as its spec says (`signed`)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch

import xaicompare.report as rp
from xaicompare.attribution import METHODS, Explanation, explain, register_method
from xaicompare.study import Study

NAME = "gradient_magnitude"


def define_gradient_magnitude():
    """The whole addition: one decorated function (the spec travels with it)."""

    @register_method(NAME, signed=False, display_name="Gradient magnitude")
    def gradient_magnitude(model, images, target, *, power: int = 1) -> Explanation:
        """||dF_target/dx|| over the colour channels, raised to `power`."""
        inputs = images.detach().requires_grad_(True)
        with torch.enable_grad():
            score = model(inputs).gather(1, target.view(-1, 1)).sum()
            (grads,) = torch.autograd.grad(score, inputs)
        return Explanation(grads.norm(dim=1).pow(power).detach(), params={"power": power})

    return gradient_magnitude


def config(folder, **executor):
    return {
        "name": "new-method", "output": str(folder), "seed": 1,
        "dataset": {"name": "shapes", "options": {"split": "test", "n": 20, "size": 32},
                    "n_images": 2},
        "models": [{"source": f"zoo:{n}"} for n in ("shapes-resnet", "shapes-mixer",
                                                    "shapes-pvt")],
        "methods": {NAME: {"power": 2}, "gradcam": {}},
        "compare": {"metrics": ["cosine"]},
        "cluster": {"permutations": 9},
        "diversity": {"corruptions": []},
        "trust": {"n_resamples": 20, "stability_resamples": 10, "n_shuffles": 1,
                  "sample_size_subsets": 2, "faithfulness_images": 1, "faithfulness_steps": 2,
                  "randomization": True, "randomization_images": 1},
        "report": {"atlas_images": 1, "formats": ["png"], "depths": [],
                   "disagreement_images": 0},
        "executor": {"threads": 1, "batch_size": 2, **executor},
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    fn = define_gradient_magnitude()
    atlas_signed = []
    real = rp.write_atlas_pages
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(rp, "write_atlas_pages", lambda *a, **kw: atlas_signed.append(
                kw["signed"]) or real(*a, **kw))
            study = Study.from_dict(config(tmp_path_factory.mktemp("local") / "run"),
                                    progress=False)
            study.run()
        yield study, fn, atlas_signed
    finally:
        METHODS.unregister(NAME)


def test_the_new_method_is_stored_compared_clustered_trusted_and_reported(finished):
    study, fn, atlas_signed = finished
    run = study.run_dir
    maps = study.read_maps(NAME)
    assert maps.shape == (3, 2, 32, 32) and np.isfinite(maps).all() and (maps >= 0).all()
    # the stored map is the method's own: a direct call on the model and its target
    images = study.dataset.load([0, 1])
    target = torch.from_numpy(study.read_logits()[0].argmax(-1))
    direct = explain(study.models[0], images, NAME, target, power=2).numpy()
    np.testing.assert_allclose(maps[0], direct, rtol=2e-3, atol=2e-3 * direct.max())
    assert (run / f"tables/similarity/{NAME}/cosine_mean.csv").is_file()
    assert (run / f"tables/cluster/{NAME}/cosine_assignments.csv").is_file()
    assert (run / f"tables/trust/{NAME}/cosine_bootstrap.csv").is_file()
    faithful = pd.read_csv(run / "tables/trust/faithfulness.csv", comment="#")
    randomised = pd.read_csv(run / "tables/trust/randomization.csv", comment="#")
    assert NAME in set(faithful["method"]) and NAME in set(randomised["method"])
    html = (run / "report.html").read_text()
    assert f"Explanation similarity: {NAME}" in html
    # the atlas colours it as its spec says: unsigned, a sequential colour map
    assert atlas_signed and all(signed[NAME] is fn.info.signed is False
                                for signed in atlas_signed)


def test_the_new_method_runs_on_ray_with_the_same_stored_maps(finished, tmp_path):
    ray = pytest.importorskip("ray")
    study, _, _ = finished
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:  # the method is defined here, not in an importable module: it travels by value
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        on_ray = Study.from_dict(config(tmp_path / "run", kind="ray", workers=1),
                                 progress=False)
        summary = on_ray.explain()
    finally:
        ray.shutdown()
    assert summary.computed[f"shapes-resnet/{NAME}"] == 2 and not summary.failed
    np.testing.assert_array_equal(on_ray.read_maps(NAME), study.read_maps(NAME))
