"""`methods: {group: cam}` runs every CAM variant through a whole study (engine, store,
compare, report) on the offline zoo, a CNN and a transformer, a few images."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import zoo_study

from xaicompare.attribution import explain
from xaicompare.attribution.catalog import methods_in_group


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cam")
    study = zoo_study(tmp / "run", "cam-group", ["shapes-resnet", "shapes-pvt"],
                      {"group": "cam", "scorecam": {"internal_batch_size": 50}},
                      diversity={"enabled": False}, trust={"enabled": False})
    study.run()
    return study


def test_every_cam_variant_is_stored_compared_and_reported(finished):
    study = finished
    methods = methods_in_group("cam")
    assert {"gradcam", "gradcampp", "hirescam", "xgradcam", "layercam", "eigencam",
            "scorecam"} <= set(methods)
    html = (study.run_dir / "report.html").read_text()
    for method in methods:
        maps = study.read_maps(method)
        assert maps.shape == (2, 3, 32, 32) and np.isfinite(maps).all() and (maps >= 0).all()
        assert (maps.reshape(6, -1).max(axis=1) > 0).any()
        assert (study.run_dir / f"tables/similarity/{method}/cosine_mean.csv").is_file()
        assert f"Explanation similarity: {method}" in html


def test_stored_maps_equal_a_direct_call(finished):
    study = finished
    images = study.dataset.load([0, 1])
    for m, model in enumerate(study.models):
        target = study.read_logits()[m, :2].argmax(-1)
        for method, params in (("scorecam", {"internal_batch_size": 50}), ("eigencam", {}),
                               ("gradcampp", {})):
            direct = explain(model, images, method, target, **params).numpy()
            np.testing.assert_allclose(study.read_maps(method)[m, :2], direct, rtol=2e-3,
                                       atol=2e-3 * np.abs(direct).max())  # stored as float16
