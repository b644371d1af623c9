"""The gradient and perturbation methods run through a whole study (store, compare,
cluster, trust, report) with no other edit than naming them, with per-image random draws
shared by every model."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import zoo_study

from xaicompare.attribution import explain
from xaicompare.engine.units import image_seeds

METHODS = {"saliency": {}, "input_x_gradient": {},
           "smoothgrad": {"n_samples": 3, "noise_level": 0.1},
           "occlusion": {"window": 16, "stride": 16}, "rise": {"n_masks": 8, "grid": 4}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("methods")
    study = zoo_study(tmp / "run", "methods", ["shapes-resnet", "shapes-pvt", "shapes-mixer"],
                      METHODS, n_images=4, diversity={"corruptions": []},
                      trust={"n_resamples": 50, "faithfulness_images": 2})
    study.run()
    return study


def test_every_method_is_stored_compared_and_reported(finished):
    study = finished
    html = (study.run_dir / "report.html").read_text()
    for method in METHODS:
        maps = study.read_maps(method)
        assert maps.shape == (3, 4, 32, 32) and np.isfinite(maps).all()
        assert (study.run_dir / f"tables/similarity/{method}/cosine_mean.csv").is_file()
        assert f"Explanation similarity: {method}" in html


def test_stored_maps_use_each_images_own_seed(finished):
    """SmoothGrad's noise and RISE's masks come from the image id, as KernelSHAP's
    coalitions do: the stored map equals a direct call with those seeds."""
    study = finished
    model = study.models[0]
    images = study.dataset.load([0, 1])
    seeds = image_seeds(study.dataset.ids[:2], study.config.seed)
    target = study.read_logits()[0, :2].argmax(-1)
    for method in ("smoothgrad", "rise"):
        direct = explain(model, images, method, target, image_seeds=seeds,
                         **METHODS[method]).numpy()
        np.testing.assert_allclose(study.read_maps(method)[0, :2], direct, rtol=2e-3,
                                   atol=2e-3 * np.abs(direct).max())  # stored as float16
