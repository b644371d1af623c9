"""The trust stage's faithfulness and randomisation tables as functions of their context:
the engine's passes are stand-ins that record what they were asked and return hand-made
AUCs and maps, so the tables are checked against numpy means and scipy's Spearman rho with
no model, no store and no Study."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from stage_fixtures import MODELS, NO_PASSES, trust_context

from xaicompare.config import TrustConfig
from xaicompare.stages import trust as trust_stage

N = 5


def logits_and_labels(rng):
    return rng.normal(size=(len(MODELS), N, 3)).astype(np.float32), rng.integers(0, 3, N)


def test_faithfulness_table_is_the_mean_of_each_model_s_stored_aucs(tmp_path):
    rng = np.random.default_rng(0)
    logits, labels = logits_and_labels(rng)
    maps = {m: np.zeros((len(MODELS), N, 4, 4), np.float32) for m in ("gradcam", "rollout")}
    skip = {"rollout": ("cnn_a", "cnn_b")}  # rollout explains transformers only
    ids = [f"img{i}" for i in range(N)]
    aucs = {(model, method, order): {"deletion_auc": rng.random(N), "insertion_auc": rng.random(N)}
            for model in MODELS for method in maps for order in NO_PASSES.curve_orders}
    asked = {"compute": [], "read": []}

    def compute_curves(chosen):
        asked["compute"].append(list(chosen))

    def read_curves(model, method, order, chosen):
        asked["read"].append((model, method, order))
        rows = [ids.index(i) for i in chosen]
        return {k: v[rows] for k, v in aucs[(model, method, order)].items()}

    passes = dataclasses.replace(NO_PASSES, compute_curves=compute_curves,
                                 read_curves=read_curves)
    ctx = trust_context(tmp_path, maps, logits, labels, passes=passes, not_applicable=skip,
                        trust=TrustConfig(faithfulness_images=3, faithfulness_steps=4))
    trust_stage.faithfulness(ctx)

    assert asked["compute"] == [ids[:3]]  # the first faithfulness_images images, once
    table = ctx.results.faithfulness()
    expected = [(model, method, order) for method in maps for model in MODELS
                if model not in skip.get(method, ()) for order in ("descending", "random")]
    assert asked["read"] == expected
    assert list(zip(table["model"], table["method"], table["order"], strict=True)) == expected
    for row in table.itertuples():
        hand = aucs[(row.model, row.method, row.order)]
        assert row.deletion_auc == pytest.approx(np.mean(hand["deletion_auc"][:3]), rel=1e-12)
        assert row.insertion_auc == pytest.approx(np.mean(hand["insertion_auc"][:3]), rel=1e-12)
        assert row.n_images == 3
    assert table.attrs["provenance"]["steps"] == 4
    assert ctx.results.writes == {"faithfulness"}


def test_no_faithfulness_images_asks_the_engine_for_nothing(tmp_path):
    logits, labels = logits_and_labels(np.random.default_rng(1))
    maps = {"gradcam": np.zeros((len(MODELS), N, 4, 4), np.float32)}
    ctx = trust_context(tmp_path, maps, logits, labels,  # NO_PASSES fails when asked
                        trust=TrustConfig(faithfulness_images=0))
    ctx.results.write_faithfulness(pd.DataFrame({"model": ["a"]}), {})  # an earlier run's
    trust_stage.faithfulness(ctx)
    assert ctx.results.faithfulness(missing_ok=True) is None  # not shown as this run's


def test_randomization_table_is_one_minus_scipy_spearman_of_stored_and_randomised_maps(
        tmp_path):
    rng = np.random.default_rng(2)
    logits, labels = logits_and_labels(rng)
    maps = {"gradcam": rng.random((len(MODELS), N, 6, 6)).astype(np.float32),
            "kernelshap": rng.random((len(MODELS), N, 6, 6)).astype(np.float32)}
    # each model's randomised copy: its maps with more or less noise (model k: k / 2)
    noise = rng.normal(size=maps["gradcam"].shape).astype(np.float32)
    randomized = maps["gradcam"] + noise * np.arange(len(MODELS))[:, None, None, None] / 2
    randomized[0] = maps["gradcam"][0] ** 3  # a monotone transform: rho = 1, score 0
    ids = [f"img{i}" for i in range(N)]
    asked = []

    def compute_randomized_maps(methods, chosen):
        asked.append((dict(methods), list(chosen)))

    def read_randomized_maps(model, method, chosen):
        assert method == "gradcam"
        return randomized[MODELS.index(model)][[ids.index(i) for i in chosen]]

    passes = dataclasses.replace(NO_PASSES, compute_randomized_maps=compute_randomized_maps,
                                 read_randomized_maps=read_randomized_maps)
    ctx = trust_context(tmp_path, maps, logits, labels, passes=passes,
                        not_applicable={"gradcam": ("vit_b",)},
                        trust=TrustConfig(randomization=True, randomization_images=3))
    trust_stage.randomization(ctx)

    # KernelSHAP has no randomisation test (it would need the stored superpixels)
    assert asked == [({"gradcam": {}}, ids[:3])]
    table = ctx.results.randomization()
    assert list(table["model"]) == ["cnn_a", "cnn_b", "vit_a"]  # vit_b: not applicable
    for m, row in enumerate(table.itertuples()):
        rho = [spearmanr(maps["gradcam"][m, k].ravel(), randomized[m, k].ravel()).statistic
               for k in range(3)]
        assert row.method == "gradcam" and row.metric == "spearman" and row.n == 3
        assert row.mean == pytest.approx(np.mean(rho), abs=1e-6)
        assert row.sanity_score == pytest.approx(1 - np.mean(rho), abs=1e-6)
    assert table["sanity_score"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert table["sanity_score"].iloc[2] > table["sanity_score"].iloc[1] > 0
    assert table.attrs["provenance"] == {"metric": "spearman", "mode": "full", "images": 3}


def test_randomization_without_a_method_that_has_it_writes_nothing(tmp_path):
    logits, labels = logits_and_labels(np.random.default_rng(3))
    maps = {"kernelshap": np.zeros((len(MODELS), N, 4, 4), np.float32)}
    ctx = trust_context(tmp_path, maps, logits, labels,  # NO_PASSES fails when asked
                        trust=TrustConfig(randomization=True))
    ctx.results.write_randomization(pd.DataFrame({"model": ["a"]}), {})  # an earlier run's
    trust_stage.randomization(ctx)
    assert ctx.results.randomization(missing_ok=True) is None
