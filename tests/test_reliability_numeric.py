"""Numerical safety: NaN/inf logits or maps are detected in the runner (warning naming model,
method and image id; `RunSummary.nonfinite`; a `finite` flag per image in the store) and
excluded from the similarity statistics by the declared rule (degenerate maps); stored
maps never overflow float16 into inf."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from torch import nn

from xaicompare.attribution import explain
from xaicompare.engine.runner import run_explanations
from xaicompare.models.base import LoadedModel
from xaicompare.store import Store
from xaicompare.store.keys import logits_entry, maps_entry
from xaicompare.study import Study

DATASET = {"name": "fake"}
METHODS = {"gradcam": {}, "integrated_gradients": {"n_steps": 2}}
MARKED = [1, 4, 5]


class Trigger(nn.Module):
    """A tiny CNN whose activations become inf (then NaN) on images the trigger selects."""

    def __init__(self, trigger, scale: float = 1.0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv, self.relu = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        self.trigger, self.scale = trigger, scale

    def forward(self, x):
        a = self.relu(self.conv(x))
        blow_up = torch.where(self.trigger(x), torch.inf, self.scale).view(-1, 1, 1, 1)
        return self.head(a * blow_up)


def wrap(net, name):
    return LoadedModel(net, name=name, family="cnn", mean=(0, 0, 0), std=(1, 1, 1),
                       cam_layer=net.relu, weights_id=name)


def never(x):
    return torch.zeros(len(x), dtype=torch.bool, device=x.device)


def marker(x):  # channel 0, pixel (0, 0) exactly 1: only set on the marked images
    return x[:, 0, 0, 0] >= 1.0


class Images:
    def __init__(self, n=8):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, 8, 8, generator=g) * 0.9
        self.images[MARKED, 0, 0, 0] = 1.0
        self.ids = [f"img{i}" for i in range(n)]
        self.labels = np.zeros(n, dtype=int)

    def __len__(self):
        return len(self.ids)

    def load(self, rows):
        return self.images[list(rows)]


def stored_nonfinite(store, models):
    """(model, what, id) read straight from the stored arrays, independent of the runner."""
    ids, out = Images().ids, set()
    for model in models:
        logits = logits_entry(store, model, DATASET).read(ids, ["logits"])["logits"]
        out |= {(model.name, "logits", i) for i, row in zip(ids, logits, strict=True)
                if not np.isfinite(row).all()}
        for method, params in METHODS.items():
            maps = maps_entry(store, model, method, params, DATASET, "predicted").read(
                ids, ["maps"])["maps"]
            out |= {(model.name, method, i) for i, m in zip(ids, maps, strict=True)
                    if not np.isfinite(m).all()}
    return out


def test_nonfinite_results_are_reported_with_model_method_and_image(tmp_path, caplog):
    models = [wrap(Trigger(never), "good"), wrap(Trigger(marker, seed=1), "nanny")]
    store = Store(tmp_path)
    with caplog.at_level(logging.WARNING, logger="xaicompare"):
        summary = run_explanations(models, Images(), METHODS, store, dataset_identity=DATASET,
                                   batch_size=3, progress=False)
    expected = stored_nonfinite(store, models)
    marked_ids = {f"img{i}" for i in MARKED}
    assert {i for m, what, i in expected if what == "logits"} == marked_ids
    assert {i for m, what, i in expected if what == "gradcam"} == marked_ids
    assert {m for m, _, _ in expected} == {"nanny"}
    assert set(summary.nonfinite) == expected and len(summary.nonfinite) == len(expected)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'nanny'" in w and "gradcam" in w and "img4" in w for w in warnings)
    assert any("'nanny'" in w and "logits" in w and "img1" in w for w in warnings)
    # A resumed run computes nothing and still reports them, from the stored flags.
    again = run_explanations(models, Images(), METHODS, store, dataset_identity=DATASET,
                             batch_size=3, progress=False)
    assert sum(again.computed.values()) == 0 and set(again.nonfinite) == expected


def test_maps_too_large_for_float16_are_stored_exactly(tmp_path):
    model = wrap(Trigger(never, scale=1e9), "huge")
    images = Images()
    store = Store(tmp_path)
    summary = run_explanations([model], images, {"gradcam": {}}, store,
                               dataset_identity=DATASET, batch_size=4, progress=False)
    stored = maps_entry(store, model, "gradcam", {}, DATASET, "predicted").read(images.ids)
    direct = explain(model, images.images, method="gradcam").numpy()
    assert np.abs(direct).max() > np.finfo(np.float16).max  # would be inf in float16
    assert stored["maps"].dtype == np.float32 and summary.nonfinite == []
    np.testing.assert_allclose(stored["maps"], direct, rtol=1e-6)


def minmax(m):
    m = m.reshape(len(m), -1).astype(np.float64)
    low, high = m.min(1, keepdims=True), m.max(1, keepdims=True)
    return (m - low) / (high - low)


def test_nan_model_yields_no_nan_in_similarity_tables_and_is_named(tmp_path):
    config = {"name": "nan", "output": str(tmp_path / "run"),
              "dataset": {"name": "shapes", "options": {"split": "test", "n": 8, "size": 16}},
              "models": [{"source": "test_resnet", "pretrained": False}],  # replaced below
              "methods": {"gradcam": {}}, "compare": {"metrics": ["cosine"]}}
    study = Study.from_dict(config, progress=False)
    data = study.dataset
    means = data.load(list(range(len(data)))).mean(dim=(1, 2, 3))
    threshold = float(means.median())
    bright = [i for i, m in zip(data.ids, means.tolist(), strict=True) if m > threshold]
    assert 0 < len(bright) < len(data)

    def too_bright(x):
        return x.mean(dim=(1, 2, 3)) > threshold

    study.__dict__["models"] = [wrap(Trigger(never, seed=s), f"cnn{s}") for s in (0, 1)] + [
        wrap(Trigger(too_bright, seed=0), "nanny")]  # cnn0's weights, NaN on bright images
    study.run(("explain", "compare"))
    tables = study.run_dir / "tables" / "similarity" / "gradcam"
    mean = pd.read_csv(tables / "cosine_mean.csv", comment="#", index_col=0)
    n = pd.read_csv(tables / "cosine_n.csv", comment="#", index_col=0)
    assert not mean.isna().any().any()
    assert n.loc["cnn0", "nanny"] == len(data) - len(bright) and n.loc["cnn0", "cnn1"] == len(data)
    degenerate = pd.read_csv(tables / "degenerate_maps.csv", comment="#")
    # the table names images by position today (ids would be better: see the issue note)
    images = {data.ids[int(i)] if str(i).isdigit() else str(i) for i in degenerate["image"]}
    assert set(degenerate["model"]) == {"nanny"} and images == set(bright)
    assert degenerate["reason"].str.contains("finite").all()
    # the excluded-pair mean equals cosine over the finite images only, by hand
    maps = study.read_maps("gradcam")
    keep = np.isfinite(maps[2].reshape(len(data), -1)).all(1)
    a, b = minmax(maps[0][keep]), minmax(maps[2][keep])
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(mean.loc["cnn0", "nanny"], cosine.mean(), atol=1e-6)
