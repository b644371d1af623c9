"""The trust stage's tables as a function of its context: stored per-image similarities and
synthetic logits in, intervals out, checked against hand-computed estimates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from stage_fixtures import MODELS, trust_context

from xaicompare.stages import trust as trust_stage

N = 12


def test_trust_tables_estimates_equal_hand_computed_means(tmp_path):
    rng = np.random.default_rng(2)
    per_image = rng.uniform(0.1, 0.9, size=(4, 4, N))
    per_image = (per_image + per_image.transpose(1, 0, 2)) / 2
    labels = rng.integers(0, 3, N)
    logits = rng.normal(size=(4, N, 3)).astype(np.float32)
    maps = {"gradcam": rng.random((4, N, 6, 6)).astype(np.float32)}
    ctx = trust_context(tmp_path, maps, logits, labels)
    ctx.results.write_per_image("gradcam", "cosine", per_image, MODELS, ctx.images.ids)
    mean = pd.DataFrame(per_image.mean(-1), index=list(MODELS), columns=list(MODELS))
    ctx.results.write_similarity("gradcam", "cosine", "mean", mean, {})
    ctx.results.writes.clear()
    trust_stage.trust_tables(ctx)
    assert set(ctx.results.reads) <= set(trust_stage.READS)
    assert set(ctx.results.writes) <= set(trust_stage.WRITES)
    boot = ctx.results.trust_bootstrap("gradcam", "cosine")
    rows = boot[boot["statistic"] == "mean"].set_index(["model_a", "model_b"])
    for i, a in enumerate(MODELS):
        for j, b in enumerate(MODELS):
            if i != j:
                row = rows.loc[(a, b)]
                assert row["estimate"] == pytest.approx(per_image[i, j].mean())
                assert row["low"] <= row["estimate"] <= row["high"]
    assert boot.attrs["provenance"]["n_resamples"] == ctx.trust.n_resamples
    nulls = ctx.results.trust_nulls("gradcam", "cosine")
    assert len(nulls) == 6  # one row per model pair
    correct = (logits.argmax(-1) == labels[None]).astype(float)
    prediction = ctx.results.prediction_bootstrap()
    kappa = prediction[prediction["metric"] == "error_consistency"].set_index(
        ["model_a", "model_b"])
    assert kappa.loc[("cnn_a", "vit_b"), "estimate"] == pytest.approx(
        cohen_kappa_score(correct[0], correct[3]))
