"""Every parameter that changes an output is in its store key, and the store never serves
an entry whose stored shape disagrees with what is expected now."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xaicompare.errors import UserError
from xaicompare.models import load_model, save_model
from xaicompare.store import Store
from xaicompare.store.keys import logits_entry, maps_entry

DATASET = {"name": "shapes", "options": {"n": 8}}
BASE = dict(pretrained=False, num_classes=10, input_size=32, probe=False)


def tiny(**changes):
    torch.manual_seed(0)  # the same random weights unless a change alters them
    return load_model("resnet10t", **{**BASE, **changes})


def keys(store, model, method="gradcam", params=None, **kwargs):
    params = {} if params is None else params
    return (logits_entry(store, model, DATASET).directory.name,
            maps_entry(store, model, method, params, DATASET, kwargs.get("target", "predicted"),
                       kwargs.get("autocast", "none")).directory.name)


@pytest.fixture(scope="module")
def base_keys(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("store"))
    return store, keys(store, tiny())


def test_the_same_load_gives_the_same_keys(base_keys):
    store, base = base_keys
    assert keys(store, tiny()) == base


@pytest.mark.parametrize("change", [
    {"input_size": 48},
    {"mean": (0.5, 0.5, 0.5)},
    {"std": (0.5, 0.5, 0.5)},
    {"class_indices": [2, 0, 1]},
    {"num_classes": 7},
    {"name": "other"},
    {"output_stride": 16},  # a timm kwarg that changes outputs, not weights
    {"pretrained": False, "drop_rate": 0.5},  # any timm kwarg is part of the model
], ids=lambda c: ",".join(c))
def test_each_load_option_changes_the_logits_and_maps_keys(base_keys, change):
    store, (logits, maps) = base_keys
    model = tiny(**change)
    new_logits, new_maps = keys(store, model)
    assert new_logits != logits and new_maps != maps


def test_changed_weights_change_the_keys(base_keys, tmp_path):
    store, (logits, maps) = base_keys
    other = tiny()
    with torch.no_grad():
        next(other.net.parameters()).add_(1e-3)
    path = save_model(other, tmp_path / "other.safetensors")
    from_file = load_model(path, probe=False)
    assert keys(store, from_file)[0] != logits


def test_the_gradcam_layer_is_in_the_gradcam_key_only(base_keys):
    store, (logits, maps) = base_keys
    model = tiny(layer="layer3")
    new_logits, new_maps = keys(store, model)
    assert new_logits == logits and new_maps != maps
    ig = {"n_steps": 4}
    assert keys(store, model, "integrated_gradients", ig) == keys(
        store, tiny(), "integrated_gradients", ig)


@pytest.mark.parametrize(("method", "params", "changed"), [
    ("gradcam", {}, {"layer": 0.5}),
    ("integrated_gradients", {"n_steps": 4}, {"n_steps": 8}),
    ("integrated_gradients", {"n_steps": 4}, {"n_steps": 4, "baseline": "blur"}),
    ("kernelshap", {"n_samples": 32}, {"n_samples": 64}),
    ("kernelshap", {"n_samples": 32}, {"n_samples": 32, "n_segments": 9}),
])
def test_each_method_option_changes_the_maps_key(base_keys, method, params, changed):
    store, _ = base_keys
    model = tiny()
    assert keys(store, model, method, params)[1] != keys(store, model, method, changed)[1]


def test_target_and_precision_change_the_maps_key(base_keys):
    store, (_, maps) = base_keys
    model = tiny()
    assert keys(store, model, target="label")[1] != maps
    assert keys(store, model, autocast="bf16")[1] != maps


def test_a_stale_entry_of_another_width_is_refused_not_served(tmp_path):
    store = Store(tmp_path)
    identity = {"model": "m", "weights": "w"}  # as an older key that omitted the classes
    old = store.entry("logits", "m__clean", identity, expect={"logits": (10,)})
    old.write(["a", "b"], {"logits": np.zeros((2, 10), np.float32)})
    assert old.read(["a"])["logits"].shape == (1, 10)
    now = store.entry("logits", "m__clean", identity, expect={"logits": (20,)})
    assert now.has_all(["a", "b"])
    with pytest.raises(UserError, match=r"\(10,\) per image.*\(20,\) is expected"):
        now.read(["a", "b"])


def test_a_study_never_reads_logits_of_another_class_space(tmp_path):
    """The issue's case: class_indices changed, same model and weights -> new entry."""
    store = Store(tmp_path)
    model = tiny(num_classes=None)  # 1000 outputs
    x = torch.rand(2, 3, 32, 32)
    model.set_class_indices([0, 217])
    first = logits_entry(store, model, DATASET)
    with torch.no_grad():
        first.write(["a", "b"], {"logits": model(x).numpy()})
    model.set_class_indices([0, 217, 482])
    second = logits_entry(store, model, DATASET)
    assert second.directory != first.directory and not second.has_all(["a", "b"])


def test_logits_entries_expect_the_models_current_width(tmp_path):
    store = Store(tmp_path)
    model = tiny(num_classes=None)
    assert logits_entry(store, model, DATASET).expect == {"logits": (1000,)}
    model.set_class_indices([0, 217, 482])
    assert logits_entry(store, model, DATASET).expect == {"logits": (3,)}


def test_a_new_study_seed_never_serves_maps_drawn_with_the_old_one(tmp_path):
    """SmoothGrad's noise comes from the image ids and the study seed: a rerun with another
    seed into the same store must recompute, not reuse the old draws."""
    from fakes import FakeImages, tiny_cnn

    from xaicompare.engine.runner import run_explanations
    from xaicompare.store import Store

    store, model = Store(tmp_path / "store"), tiny_cnn()
    data, methods, identity = FakeImages(4, 16, np.zeros(4, dtype=int)), \
        {"smoothgrad": {"n_samples": 3}}, {"n": "fake"}
    maps, computed = {}, []
    for seed in (0, 1, 0):
        summary = run_explanations([model], data, methods, store, dataset_identity=identity,
                                   batch_size=2, progress=False, seed=seed)
        computed.append(summary.computed["tiny/smoothgrad"])
        maps[seed] = maps_entry(store, model, "smoothgrad", methods["smoothgrad"], identity,
                                "predicted", seed=seed).read(data.ids, ["maps"])["maps"]
    assert computed == [4, 4, 0]  # a new seed recomputes; the first seed's maps are reused
    assert not np.array_equal(maps[0], maps[1])


def test_a_method_version_above_1_changes_its_maps_key_and_1_adds_nothing(base_keys,
                                                                          monkeypatch):
    import dataclasses

    from xaicompare.attribution.registry import METHODS

    store, base = base_keys
    gradcam = METHODS.get("gradcam")
    monkeypatch.setattr(gradcam, "info", dataclasses.replace(gradcam.info, version=2))
    bumped = keys(store, tiny())
    assert bumped[0] == base[0] and bumped[1] != base[1]  # logits keep their key
    monkeypatch.setattr(gradcam, "info", dataclasses.replace(gradcam.info, version=1))
    assert keys(store, tiny()) == base


def test_reading_keys_imports_nothing_of_the_engine():
    import subprocess
    import sys

    code = ("import sys, xaicompare.store.keys; "
            "print(sorted(m for m in sys.modules if m.startswith('xaicompare.engine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
