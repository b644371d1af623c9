"""Degenerate models are named, not fatal: all-zero / non-finite maps and non-finite or
constant logits are counted per pair and per model, every other pair is computed, and the
model is named once (log, table, report line)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import xaicompare as xc
from xaicompare.compare import CompareOptions, similarity_matrices
from xaicompare.diversity import model_metrics, top_k_accuracy
from xaicompare.models import load_model, save_model
from xaicompare.models.base import LoadedModel
from xaicompare.study import Study

N, SIDE = 6, 8
MINMAX = CompareOptions(normalization="minmax")  # as a study compares


def healthy_maps(m: int) -> np.ndarray:
    return np.random.default_rng(0).random((m, N, SIDE, SIDE)).astype(np.float32)


def minmax_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Independent reference: cosine of per-image min-max normalised maps."""
    def norm(x):
        x = x.reshape(len(x), -1).astype(np.float64)
        low, high = x.min(1, keepdims=True), x.max(1, keepdims=True)
        return (x - low) / (high - low)
    a, b = norm(a), norm(b)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("bad", ["zero", "nan", "inf"])
def test_one_degenerate_model_leaves_every_other_pair_computed(bad):
    good = healthy_maps(2)
    fill = {"zero": 0.0, "nan": np.nan, "inf": np.inf}[bad]
    maps = np.concatenate([good, np.full((1, N, SIDE, SIDE), fill, np.float32)])
    names = ["a", "b", "broken"]
    results = similarity_matrices(maps, ["cosine", "rbf"], MINMAX, names=names)
    alone = similarity_matrices(good, ["cosine", "rbf"], MINMAX, names=names[:2])
    cosine = results["cosine"]
    np.testing.assert_allclose(cosine.per_image[0, 1], minmax_cosine(good[0], good[1]),
                               rtol=1e-5)
    assert cosine.n.loc["a", "b"] == N and cosine.n_degenerate.loc["a", "broken"] == N
    assert cosine.n_degenerate.loc["a", "b"] == 0 and np.isnan(cosine.mean.loc["a", "broken"])
    # the RBF width comes from the valid pair only, so a-b is as without the broken model
    assert results["rbf"].params["sigma"] == pytest.approx(alone["rbf"].params["sigma"])
    np.testing.assert_allclose(results["rbf"].per_image[0, 1], alone["rbf"].per_image[0, 1],
                               rtol=1e-6)
    assert set(cosine.degenerate["model"]) == {"broken"}


def test_no_valid_pair_is_undefined_not_an_error():
    maps = np.concatenate([healthy_maps(1), np.zeros((1, N, SIDE, SIDE), np.float32)])
    result = similarity_matrices(maps, ["rbf"], MINMAX, names=["a", "broken"])["rbf"]
    assert result.params["unresolved"] == "no valid pair"
    assert np.isnan(result.mean.loc["a", "broken"]) and result.n_degenerate.loc["a", "broken"] == N


def test_top_k_counts_a_tie_as_a_miss():
    constant = np.zeros((8, 10))
    labels = np.arange(8)
    assert top_k_accuracy(constant, labels, 1) == 0.0
    assert top_k_accuracy(constant, labels, 5) == 0.0
    scores = np.log(np.array([[0.4, 0.4, 0.2], [0.5, 0.3, 0.2]]))
    assert top_k_accuracy(scores, np.array([0, 0]), 1) == 0.5  # the tie is a miss
    assert top_k_accuracy(scores, np.array([0, 0]), 2) == 1.0
    metrics = model_metrics(constant, labels % 10, kind="logits")
    assert metrics["top1_accuracy"] == 0.0 and metrics["top5_accuracy"] == 0.0


def inf_model() -> LoadedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        net[4].bias.fill_(float("inf"))
    return LoadedModel(net, name="inf-logits", family="cnn", cam_layer=net[1])


def test_explain_on_non_finite_logits_warns_and_gives_nan_maps():
    images = torch.rand(2, 3, 16, 16)
    model = inf_model()
    with pytest.warns(RuntimeWarning, match="'inf-logits': non-finite logits.*2 of 2"):
        maps = xc.explain(model, images, method="gradcam", target=0)
    assert maps.shape == (2, 16, 16) and torch.isnan(maps).all()


def bad_checkpoint(tmp_path, kind: str):
    torch.manual_seed(0)
    model = load_model("resnet10t", pretrained=False, num_classes=10, input_size=64,
                       probe=False, name="bad")
    with torch.no_grad():
        if kind == "inf":  # finite weights (inf weights are refused at load) that overflow
            model.net.fc.weight.fill_(3e38)
        else:  # all weights zero: constant logits and all-zero maps
            for param in model.net.parameters():
                param.zero_()
    return save_model(model, tmp_path / f"bad-{kind}.safetensors")


@pytest.mark.parametrize("kind", ["inf", "zero"])
def test_a_study_with_a_degenerate_model_names_it_and_finishes(tmp_path, kind, caplog):
    config = {
        "name": "degenerate", "output": str(tmp_path / "run"), "seed": 0,
        "dataset": {"name": "shapes", "options": {"split": "test", "n": 12, "size": 32}},
        "models": [{"source": "zoo:shapes-resnet"}, {"source": "zoo:shapes-mixer"},
                   {"source": "resnet10t", "checkpoint": str(bad_checkpoint(tmp_path, kind)),
                    "name": "bad"}],
        "methods": {"gradcam": {}}, "compare": {"metrics": ["cosine", "rbf"]},
        "cluster": {"permutations": 9},
        "trust": {"n_resamples": 10, "stability_resamples": 10, "n_shuffles": 2,
                  "sample_size_subsets": 2, "faithfulness_images": 0},
        "report": {"enabled": False},
    }
    study = Study.from_dict(config, progress=False)
    with caplog.at_level(logging.WARNING, logger="xaicompare"):
        study.run(("explain", "compare", "cluster", "diversity", "trust"))
    named = [r.getMessage() for r in caplog.records if "is degenerate" in r.getMessage()]
    assert len(named) == 1 and "'bad'" in named[0]
    table = pd.read_csv(study.run_dir / "tables/degenerate_models.csv", comment="#")
    assert set(table["model"]) == {"bad"}
    logits_reason = {"inf": "non-finite", "zero": "constant"}[kind]
    assert ((table["output"] == "logits") & (table["reason"] == logits_reason)
            & (table["n_images"] == 12)).any()
    n_degenerate = pd.read_csv(study.run_dir / "tables/similarity/gradcam/rbf_n_degenerate.csv",
                               comment="#", index_col=0)
    assert n_degenerate.loc["shapes-resnet", "bad"] == 12
    assert n_degenerate.loc["shapes-resnet", "shapes-mixer"] == 0
    rbf = pd.read_csv(study.run_dir / "tables/similarity/gradcam/rbf_mean.csv", comment="#",
                      index_col=0)
    assert np.isfinite(rbf.loc["shapes-resnet", "shapes-mixer"])
    metrics = pd.read_csv(study.run_dir / "tables/diversity/model_metrics.csv", comment="#",
                          index_col=0)
    assert metrics.loc["shapes-resnet", "accuracy"] > 0.8
    if kind == "inf":
        assert metrics.loc["bad", "n_left_out"] == 12
    else:
        assert metrics.loc["bad", "top1_accuracy"] == 0.0  # a tie is no hit
    from xaicompare.stages.health import summary_line

    assert summary_line(study.results).startswith("bad: ")


def test_maps_degenerate_on_a_few_images_are_one_line_not_a_degenerate_model(tmp_path, caplog):
    from xaicompare.stages.health import report_degenerate
    from xaicompare.stages.results import Results

    rows = [{"model": m, "output": "kernelshap", "reason": "constant", "n_images": 4,
             "n_total": 96} for m in ("a", "b", "c")]
    rows.append({"model": "d", "output": "gradcam", "reason": "all-zero", "n_images": 90,
                 "n_total": 96})
    with caplog.at_level(logging.WARNING, logger="xaicompare"):
        table = report_degenerate(Results(tmp_path), rows)
    messages = [r.getMessage() for r in caplog.records]
    assert len(table) == 4 and len(messages) == 2
    assert "model 'd' is degenerate: gradcam all-zero on 90/96" in messages[0]
    assert messages[1].startswith("12 maps are all-zero, constant or non-finite on a few "
                                  "images (kernelshap 12 (3 models))")
