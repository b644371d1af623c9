"""The diversity stage as a function of its context: synthetic logits and a stored
similarity in, tables out, checked against scikit-learn and hand-computed ensembles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from sklearn.metrics import accuracy_score, cohen_kappa_score
from stage_fixtures import MODELS, diversity_context

from xaicompare.stages import diversity as diversity_stage

N, K = 24, 3


@pytest.fixture
def inputs():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, K, N)
    logits = rng.normal(size=(len(MODELS), N, K))
    logits[np.arange(len(MODELS))[:, None], np.arange(N)[None], labels[None]] += np.array(
        [0.5, 1.0, 1.5, 2.0])[:, None]  # models from weak to strong
    per_image = rng.uniform(0.2, 0.9, size=(len(MODELS), len(MODELS), N))
    per_image = (per_image + per_image.transpose(1, 0, 2)) / 2
    return labels, logits.astype(np.float32), per_image


def stored_similarity(ctx, per_image):
    mean, std = per_image.mean(-1), per_image.std(-1)
    values = np.sqrt((1 - mean) ** 2 + std ** 2)
    np.fill_diagonal(values, 0.0)
    D = pd.DataFrame(values, index=list(MODELS), columns=list(MODELS))
    ctx.results.write_per_image("gradcam", "cosine", per_image, MODELS, ctx.images.ids)
    ctx.results.write_similarity("gradcam", "cosine", "dissimilarity", D, {})
    ctx.results.writes.clear()


def test_diversity_tables_equal_sklearn_and_hand_computed_ensembles(tmp_path, inputs):
    labels, logits, per_image = inputs
    ctx = diversity_context(tmp_path, logits, labels, ensemble_size=2)
    stored_similarity(ctx, per_image)
    diversity_stage.run_diversity(ctx)
    assert set(ctx.results.reads) <= set(diversity_stage.READS)
    assert set(ctx.results.writes) <= set(diversity_stage.WRITES)
    preds = logits.argmax(-1)
    metrics = ctx.results.diversity("model_metrics")
    for m, name in enumerate(MODELS):
        assert metrics.loc[name, "accuracy"] == pytest.approx(accuracy_score(labels, preds[m]))
        assert metrics.loc[name, "family"] == ctx.families[name]
    correct = preds == labels[None]
    kappa = ctx.results.diversity("error_consistency")
    for i, a in enumerate(MODELS):
        for j, b in enumerate(MODELS):
            if i != j:
                assert kappa.loc[a, b] == pytest.approx(cohen_kappa_score(correct[i],
                                                                          correct[j]))
    ensembles = ctx.results.diversity("ensembles").set_index("members")
    probs = softmax(logits.astype(np.float64), axis=-1)
    for i, a in enumerate(MODELS):
        for j in range(i + 1, len(MODELS)):
            hand = accuracy_score(labels, (probs[i] + probs[j]).argmax(-1))
            assert ensembles.loc[f"{a} + {MODELS[j]}", "accuracy"] == pytest.approx(hand)
    # the joint view read the stored similarity: Mantel per method and metric
    mantel = ctx.results.mantel()
    assert mantel[["method", "metric"]].values.tolist() == [["gradcam", "cosine"]]
    assert ctx.results.disagreement("predictions")["id"].isin(ctx.images.ids).all()
    assert len(ctx.results.matrix_agreement()) == 1  # errors vs gradcam/cosine (no CKA)


def test_a_model_with_non_finite_logits_is_scored_on_its_finite_images(tmp_path, inputs):
    labels, logits, per_image = inputs
    logits = logits.copy()
    logits[1, :5] = np.nan
    ctx = diversity_context(tmp_path, logits, labels)
    stored_similarity(ctx, per_image)
    diversity_stage.run_diversity(ctx)
    metrics = ctx.results.diversity("model_metrics")
    assert metrics.loc["cnn_b", "n_left_out"] == 5
    assert metrics.loc["cnn_b", "accuracy"] == pytest.approx(
        accuracy_score(labels[5:], logits[1, 5:].argmax(-1)))
    members = ctx.results.diversity("ensembles")["members"]
    assert not members.str.contains("cnn_b").any()  # left out of the ensembles


def test_without_labels_the_stage_writes_nothing(tmp_path, inputs):
    _, logits, _ = inputs
    ctx = diversity_context(tmp_path, logits, np.full(N, -1))
    assert diversity_stage.run_diversity(ctx) == {}
    assert ctx.results.writes == set()
