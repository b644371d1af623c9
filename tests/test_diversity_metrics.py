"""Per-model metrics, calibration, pairwise diversity and ensembles, against hand-computed
cases and independent references (scikit-learn, numpy, plain Python loops)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import brier_score_loss, cohen_kappa_score, log_loss, top_k_accuracy_score

from xaicompare.diversity import (
    ce_diversity,
    diversity_components,
    ensemble_table,
    error_consistency,
    expected_calibration_error,
    model_metrics,
    pairwise_matrix,
    reliability_data,
    zero_one_diversity,
)
from xaicompare.errors import UserError


def two_class_probs(confidence, correct):
    """Rows [c, 1 - c] (class 0 predicted); label 0 where correct, else 1."""
    c = np.asarray(confidence, float)
    probs = np.stack([c, 1 - c], axis=1)
    labels = np.where(np.asarray(correct, bool), 0, 1)
    return probs, labels


# ---------------------------------------------------------------- per-model metrics


def test_metrics_match_sklearn_and_logits_equal_probs():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 7)) * 2
    labels = rng.integers(0, 7, 200)
    probs = softmax(logits, axis=1)
    from_logits = model_metrics(logits, labels, k=(1, 3, 5))
    from_probs = model_metrics(probs, labels, k=(1, 3, 5))
    from_tensor = model_metrics(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels))
    for key in ("accuracy", "top1_accuracy", "top5_accuracy", "nll", "brier", "ece"):
        assert from_logits[key] == pytest.approx(from_probs[key], abs=1e-10)
        assert from_logits[key] == pytest.approx(from_tensor[key], abs=1e-5)
    assert from_logits["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == labels))
    for k in (1, 3, 5):
        ref = top_k_accuracy_score(labels, probs, k=k, labels=np.arange(7))
        assert from_logits[f"top{k}_accuracy"] == pytest.approx(ref)
    assert from_logits["nll"] == pytest.approx(log_loss(labels, probs, labels=np.arange(7)))
    ref_brier = brier_score_loss(labels, probs, labels=np.arange(7))
    assert from_logits["brier"] == pytest.approx(ref_brier)
    assert from_logits["ece_binning"] == "width" and from_logits["ece_n_bins"] == 15


def test_brier_hand_case():
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    labels = np.array([0, 2])
    # (0.09 + 0.04 + 0.01) and (0.25 + 0.25 + 1)
    assert model_metrics(probs, labels, k=(1,))["brier"] == pytest.approx((0.14 + 1.5) / 2)


def test_top_k_larger_than_classes_is_nan_with_warning():
    probs, labels = two_class_probs([0.9, 0.6], [1, 0])
    with pytest.warns(UserWarning, match="top-5"):
        out = model_metrics(probs, labels)
    assert math.isnan(out["top5_accuracy"])


def test_ece_hand_case_width_and_mass():
    probs, labels = two_class_probs([0.55, 0.6, 0.65, 0.8, 0.9], [0, 0, 1, 1, 1])
    # width, 4 bins: (0.5, 0.75] has conf 0.6, acc 1/3; (0.75, 1] has conf 0.85, acc 1
    width = 3 / 5 * abs(1 / 3 - 0.6) + 2 / 5 * abs(1 - 0.85)
    assert expected_calibration_error(probs, labels, n_bins=4) == pytest.approx(width)
    # mass, 3 bins of sizes 2, 2, 1: {.55, .6} acc 0, {.65, .8} acc 1, {.9} acc 1
    mass = 2 / 5 * 0.575 + 2 / 5 * (1 - 0.725) + 1 / 5 * (1 - 0.9)
    assert expected_calibration_error(probs, labels, n_bins=3, binning="mass") == pytest.approx(
        mass
    )
    out = model_metrics(probs, labels, k=(1,), n_bins=3, binning="mass")
    assert out["ece"] == pytest.approx(mass) and out["ece_binning"] == "mass"


def test_ece_bin_edges_are_right_closed():
    probs, labels = two_class_probs([0.75, 0.76], [1, 1])
    table = reliability_data(probs, labels, n_bins=4)
    assert table["count"].tolist() == [0, 0, 1, 1]
    assert np.isnan(table.loc[0, "confidence"]) and np.isnan(table.loc[0, "accuracy"])


@pytest.mark.parametrize("binning", ["width", "mass"])
def test_ece_matches_loop_reference(binning):
    rng = np.random.default_rng(1)
    probs = softmax(rng.normal(size=(101, 4)) * 3, axis=1)
    labels = rng.integers(0, 4, 101)
    conf, correct = probs.max(1), probs.argmax(1) == labels
    n_bins, total = 7, 0.0
    if binning == "width":
        groups = [
            [i for i in range(101) if b / n_bins < conf[i] <= (b + 1) / n_bins]
            for b in range(n_bins)
        ]
    else:
        order = sorted(range(101), key=lambda i: conf[i])
        sizes = [101 // n_bins + (1 if b < 101 % n_bins else 0) for b in range(n_bins)]
        starts = np.cumsum([0, *sizes])
        groups = [order[starts[b] : starts[b + 1]] for b in range(n_bins)]
    for g in groups:
        if g:
            total += len(g) / 101 * abs(np.mean(correct[g]) - np.mean(conf[g]))
    got = expected_calibration_error(probs, labels, n_bins=n_bins, binning=binning)
    assert got == pytest.approx(total)
    table = reliability_data(probs, labels, n_bins=n_bins, binning=binning)
    assert table["count"].sum() == 101 and list(table.columns[:2]) == ["bin", "lower"]


def test_metrics_reject_bad_input():
    probs, labels = two_class_probs([0.9, 0.6], [1, 0])
    with pytest.raises(UserError, match="binning"):
        model_metrics(probs, labels, binning="quantile")
    with pytest.raises(UserError, match="labels must lie"):
        model_metrics(probs, np.array([0, 2]), k=(1,))
    with pytest.raises(UserError, match="entries"):
        model_metrics(probs, np.array([0, 1, 1]), k=(1,))


# ---------------------------------------------------------------- pairwise diversity


def test_error_consistency_hand_cases():
    assert error_consistency([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.0)
    # c_obs = 3/4, p = (3/4, 1/2), c_exp = 3/8 + 1/8 = 1/2 -> kappa = 1/2
    assert error_consistency([1, 1, 1, 0], [1, 1, 0, 0]) == pytest.approx(0.5)
    assert error_consistency([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
    assert error_consistency([1, 0, 0, 1], [1, 0, 0, 1]) == pytest.approx(1.0)
    # one always right, the other always wrong: c_exp = 0, c_obs = 0 -> 0 (not degenerate)
    assert error_consistency([1, 1, 1], [0, 0, 0]) == pytest.approx(0.0)


def test_error_consistency_is_cohens_kappa_of_correctness():
    rng = np.random.default_rng(2)
    for _ in range(20):
        a = rng.random(50) < rng.uniform(0.2, 0.9)
        b = np.where(rng.random(50) < 0.6, a, rng.random(50) < 0.5)
        assert error_consistency(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_error_consistency_degenerate_is_nan_with_reason():
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert math.isnan(error_consistency([1, 1, 1], [1, 1, 1]))
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert math.isnan(error_consistency(np.zeros(4, bool), np.zeros(4, bool)))


def test_error_consistency_rejects_non_binary_and_misaligned():
    with pytest.raises(UserError, match="boolean"):
        error_consistency([0.2, 1], [1, 0])
    with pytest.raises(UserError, match="aligned"):
        error_consistency([1, 0, 1], [1, 0])


def test_zero_one_diversity_hand_case_and_numpy_reference():
    # image 0: losses (0, 1) -> variance 1/4; image 1: (1, 1) -> 0
    assert zero_one_diversity([[1, 0], [0, 0]]) == pytest.approx(0.125)
    rng = np.random.default_rng(3)
    correct = rng.random((5, 40)) < 0.7
    loss = (~correct).astype(float)
    ref = np.mean([np.var(loss[:, n]) for n in range(40)])
    assert zero_one_diversity(correct) == pytest.approx(ref)


def test_ce_diversity_hand_case_and_both_forms():
    # variance of (0.8, 0.4) is 0.04, max 0.8 -> 0.04 / (2 * 0.64)
    assert ce_diversity([[0.8], [0.4]]) == pytest.approx(0.04 / 1.28)
    rng = np.random.default_rng(4)
    p = rng.uniform(0.01, 1, (4, 30))
    ratio = p / (np.sqrt(2) * p.max(axis=0))
    assert ce_diversity(p) == pytest.approx(np.var(ratio, axis=0).mean())


def test_ce_diversity_bounds_ensemble_nll():
    # second-order Jensen: -ln mean(p) <= mean(-ln p) - Var(p) / (2 max p^2), per image
    rng = np.random.default_rng(5)
    p = rng.uniform(0.001, 1, (6, 500))
    ens_nll = -np.log(p.mean(axis=0)).mean()
    members_nll = -np.log(p).mean()
    assert ens_nll <= members_nll - ce_diversity(p) + 1e-12
    assert ce_diversity(p) > 0


def test_identical_models_have_no_diversity():
    rng = np.random.default_rng(6)
    correct = np.tile(rng.random(30) < 0.6, (3, 1))
    p = np.tile(rng.uniform(0.1, 1, 30), (3, 1))
    assert zero_one_diversity(correct) == 0.0
    assert ce_diversity(p) == pytest.approx(0.0, abs=1e-15)
    ec = pairwise_matrix(correct, "error_consistency")
    np.testing.assert_allclose(ec, np.ones((3, 3)))
    np.testing.assert_allclose(pairwise_matrix(correct, "zero_one_diversity"), 0.0)
    np.testing.assert_allclose(pairwise_matrix(p, "ce_diversity"), 0.0, atol=1e-15)
    np.testing.assert_allclose(diversity_components(correct), 0.0)


def test_components_match_loop_and_decompose_zero_one():
    rng = np.random.default_rng(7)
    correct = rng.random((4, 25)) < 0.6
    comp = diversity_components(correct, names=list("abcd"))
    assert isinstance(comp, pd.DataFrame) and list(comp.index) == list("abcd")
    for i, j in itertools.product(range(4), repeat=2):
        ref = sum(correct[i, n] and not correct[j, n] for n in range(25)) / 25
        assert comp.iloc[i, j] == pytest.approx(ref)
    d01 = pairwise_matrix(correct, "zero_one_diversity")
    np.testing.assert_allclose(d01, (comp.to_numpy() + comp.to_numpy().T) / 4)


@pytest.mark.parametrize(
    "metric, scalar, kind",
    [
        ("error_consistency", error_consistency, "correct"),
        ("zero_one_diversity", lambda a, b: zero_one_diversity([a, b]), "correct"),
        ("ce_diversity", lambda a, b: ce_diversity([a, b]), "probs"),
    ],
)
def test_pairwise_matrix_matches_scalar_function(metric, scalar, kind):
    rng = np.random.default_rng(8)
    values = rng.random((5, 60)) < 0.6 if kind == "correct" else rng.uniform(0.01, 1, (5, 60))
    mat = pairwise_matrix(values, metric, names=[f"m{i}" for i in range(5)])
    assert mat.shape == (5, 5) and list(mat.columns) == [f"m{i}" for i in range(5)]
    for i, j in itertools.product(range(5), repeat=2):
        assert mat.iloc[i, j] == pytest.approx(scalar(values[i], values[j]))
    custom = pairwise_matrix(values, scalar)
    np.testing.assert_allclose(custom, mat.to_numpy())


def test_pairwise_matrix_unknown_metric_names_choices():
    with pytest.raises(UserError, match="accepted: .*error_consistency"):
        pairwise_matrix(np.ones((2, 3), bool), "error_consistancy")


# ---------------------------------------------------------------- ensembles


def test_ensemble_table_hand_case():
    a = [[0.9, 0.1], [0.45, 0.55]]  # right, wrong
    b = [[0.4, 0.6], [0.8, 0.2]]  # wrong, right
    table = ensemble_table(np.array([a, b]), [0, 0], names=["a", "b"])
    row = table.iloc[0]
    assert row["members"] == ("a", "b") and row["size"] == 2
    assert row["accuracy"] == pytest.approx(1.0)  # (0.65, 0.35) and (0.625, 0.375)
    assert row["best_member_accuracy"] == pytest.approx(0.5)
    assert row["accuracy_gain"] == pytest.approx(0.5)
    ens_nll = -(np.log(0.65) + np.log(0.625)) / 2
    best_nll = min(-(np.log(0.9) + np.log(0.45)) / 2, -(np.log(0.4) + np.log(0.8)) / 2)
    assert row["nll"] == pytest.approx(ens_nll)
    assert row["nll_gain"] == pytest.approx(best_nll - ens_nll)
    assert row["zero_one_diversity"] == pytest.approx(0.25)
    assert row["error_consistency"] == pytest.approx(-1.0)
    ce = (0.0625 / (2 * 0.81) + 0.030625 / (2 * 0.64)) / 2
    assert row["ce_diversity"] == pytest.approx(ce)


def test_ensemble_table_subsets_and_reference_columns():
    rng = np.random.default_rng(9)
    probs = softmax(rng.normal(size=(4, 50, 5)) * 2, axis=2)
    labels = rng.integers(0, 5, 50)
    names = ["w", "x", "y", "z"]
    table = ensemble_table(probs, labels, names, k=(2, 3))
    assert len(table) == 6 + 4
    row = table[table["members"] == ("x", "y", "z")].iloc[0]
    ens = probs[1:].mean(axis=0)
    assert row["accuracy"] == pytest.approx(np.mean(ens.argmax(1) == labels))
    assert row["nll"] == pytest.approx(log_loss(labels, ens, labels=np.arange(5)))
    correct = probs.argmax(2) == labels
    pairs = [(1, 2), (1, 3), (2, 3)]
    ec = np.mean([cohen_kappa_score(correct[i], correct[j]) for i, j in pairs])
    assert row["error_consistency"] == pytest.approx(ec)
    assert row["zero_one_diversity"] == pytest.approx(zero_one_diversity(correct[1:]))


def test_ensemble_table_rejects_logits_and_bad_k():
    logits = np.random.default_rng(0).normal(size=(3, 4, 2))
    with pytest.raises(UserError, match="softmax"):
        ensemble_table(logits, [0, 1, 0, 1], ["a", "b", "c"])
    probs = softmax(logits, axis=2)
    with pytest.raises(UserError, match="ensemble size"):
        ensemble_table(probs, [0, 1, 0, 1], ["a", "b", "c"], k=4)
