"""Runner: stores what explain computes, skips what is stored, resumes after a crash."""

import numpy as np
import pytest
import torch
from torch import nn

from xaicompare.attribution import explain
from xaicompare.engine.runner import run_explanations
from xaicompare.engine.units import image_seeds
from xaicompare.models.base import LoadedModel
from xaicompare.store import Store
from xaicompare.store.keys import maps_entry

DATASET = {"name": "fake"}


class FakeImages:
    """The ImageSet interface the runner needs: ids, labels, load(indices)."""

    def __init__(self, n=10, size=16, fail_after=None):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, size, size, generator=generator)
        self.ids = [f"img{i:03d}" for i in range(n)]
        self.labels = np.arange(n) % 3
        self.loads = 0
        self.fail_after = fail_after

    def __len__(self):
        return len(self.ids)

    def load(self, indices):
        self.loads += 1
        if self.fail_after is not None and self.loads > self.fail_after:
            raise RuntimeError("killed")
        return self.images[list(indices)]


def tiny_model(name="tiny", seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return LoadedModel(net, name=name, family="cnn", cam_layer=net[3], weights_id=f"w{seed}")


METHODS = {"gradcam": {}, "integrated_gradients": {"n_steps": 4}}


def stored_maps(store, model, method):
    entry = maps_entry(store, model, method, METHODS[method], DATASET, "predicted")
    return entry.read(FakeImages().ids)["maps"]


def test_stored_maps_equal_direct_explain(tmp_path):
    store, data, model = Store(tmp_path), FakeImages(), tiny_model()
    summary = run_explanations([model], data, METHODS, store, dataset_identity=DATASET,
                               batch_size=4, progress=False)
    assert summary.computed["tiny/gradcam"] == 10
    for method, params in METHODS.items():
        direct = explain(model, data.images, method=method, **params).numpy()
        np.testing.assert_allclose(stored_maps(store, model, method), direct, atol=2e-3,
                                   rtol=2e-3)  # float16 storage


def test_second_run_computes_nothing_and_loads_no_images(tmp_path):
    store, model = Store(tmp_path), tiny_model()
    run_explanations([model], FakeImages(), METHODS, store, dataset_identity=DATASET,
                     batch_size=4, progress=False)
    again = FakeImages()
    summary = run_explanations([model], again, METHODS, store, dataset_identity=DATASET,
                               batch_size=4, progress=False)
    assert sum(summary.computed.values()) == 0 and again.loads == 0


def test_interrupted_run_resumes_to_identical_results(tmp_path):
    model = tiny_model()
    full = Store(tmp_path / "full")
    run_explanations([model], FakeImages(), METHODS, full, dataset_identity=DATASET,
                     batch_size=4, progress=False)
    crashed = Store(tmp_path / "crashed")
    with pytest.raises(RuntimeError, match="killed"):
        run_explanations([model], FakeImages(fail_after=2), METHODS, crashed,
                         dataset_identity=DATASET, batch_size=4, progress=False)
    summary = run_explanations([model], FakeImages(), METHODS, crashed, dataset_identity=DATASET,
                               batch_size=4, progress=False)
    assert summary.computed["tiny/gradcam"] == 2  # only the last batch was left
    for method in METHODS:
        np.testing.assert_array_equal(stored_maps(crashed, model, method),
                                      stored_maps(full, model, method))


def test_adding_a_model_computes_only_that_model(tmp_path):
    store = Store(tmp_path)
    a, b = tiny_model("a", 0), tiny_model("b", 1)
    run_explanations([a], FakeImages(), METHODS, store, dataset_identity=DATASET,
                     progress=False)
    summary = run_explanations([a, b], FakeImages(), METHODS, store, dataset_identity=DATASET,
                               progress=False)
    assert summary.computed.get("a/gradcam", 0) == 0 and summary.computed["b/gradcam"] == 10


def test_image_seeds_depend_on_id_not_position():
    first = image_seeds(["x", "y"], 0)
    second = image_seeds(["y", "x"], 0)
    assert first[0] == second[1] and first[1] == second[0]
    assert not torch.equal(image_seeds(["x"], 0), image_seeds(["x"], 1))
