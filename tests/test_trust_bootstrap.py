"""Bootstrap over images: reweighting equals a naive loop over the same resamples; intervals
cover a known value at their nominal rate; BCa agrees with scipy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from xaicompare.compare.similarity import aggregate_array
from xaicompare.diversity import (
    ce_diversity_matrix,
    ensemble_table,
    error_consistency_matrix,
    zero_one_diversity_matrix,
)
from xaicompare.errors import UserError
from xaicompare.trust import (
    bootstrap_ensemble_gain,
    bootstrap_matrix,
    bootstrap_pairwise,
    resample_indices,
)


def per_image_values(m=4, n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.3, 1.0, (m, m, n))
    x = (x + x.transpose(1, 0, 2)) / 2
    x[0, 1, :7] = x[1, 0, :7] = np.nan  # excluded pair-images
    x[2, 3, :] = x[3, 2, :] = np.nan  # a pair with no usable image at all
    return x


@pytest.mark.parametrize("statistic", ["mean", "dissimilarity", "median"])
def test_replicates_equal_naive_loop_over_same_resamples(statistic):
    x = per_image_values()
    result = bootstrap_matrix(x, statistic, n_resamples=60, seed=3, names=list("abcd"))
    idx = resample_indices(x.shape[-1], 60, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        naive = np.stack([aggregate_array(x[..., i])[statistic] for i in idx])
        full = aggregate_array(x)[statistic]
        low, high = np.nanpercentile(naive, [2.5, 97.5], axis=0)
        se = np.nanstd(naive, axis=0, ddof=1)
    np.testing.assert_allclose(result.replicates, naive, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.estimate.to_numpy(), full, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.low.to_numpy(), low, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.high.to_numpy(), high, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.se.to_numpy(), se, rtol=1e-9, atol=1e-12)
    assert np.isnan(result.estimate.loc["c", "d"]) and np.isnan(result.low.loc["c", "d"])
    assert list(result.estimate.index) == list("abcd")
    table = result.table()
    assert len(table) == 16 and set(table.columns) >= {"model_a", "model_b", "low", "high"}


def test_same_seed_same_numbers_other_seed_other_numbers():
    x = per_image_values()
    a = bootstrap_matrix(x, n_resamples=50, seed=1)
    b = bootstrap_matrix(x, n_resamples=50, seed=1)
    c = bootstrap_matrix(x, n_resamples=50, seed=2)
    np.testing.assert_array_equal(a.replicates, b.replicates)
    assert not np.allclose(a.low.iloc[0, 2], c.low.iloc[0, 2])


@pytest.mark.parametrize("interval", ["percentile", "bca"])
def test_interval_covers_true_value_at_nominal_rate(interval):
    """400 independent data sets (one per 'pair') with a known answer, one call."""
    a, b, n, reps = 2.0, 5.0, 80, 400
    rng = np.random.default_rng(11)
    values = rng.beta(a, b, size=(reps, 1, n))
    true_mean = a / (a + b)
    true_std = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    truths = {"mean": true_mean, "dissimilarity": np.hypot(1 - true_mean, true_std)}
    for statistic, truth in truths.items():
        result = bootstrap_matrix(values, statistic, n_resamples=1000, seed=0,
                                  names=([f"r{i}" for i in range(reps)], ["c"]),
                                  interval=interval)
        covered = (result.low.to_numpy() <= truth) & (truth <= result.high.to_numpy())
        rate = covered.mean()
        tolerance = 3 * np.sqrt(0.95 * 0.05 / reps)  # binomial, 3 sd
        assert abs(rate - 0.95) < tolerance, (statistic, rate)


def test_bca_matches_scipy_bootstrap():
    rng = np.random.default_rng(5)
    data = rng.exponential(1.0, size=60)  # skewed: BCa differs from percentile
    ours = bootstrap_matrix(data[None, None], "mean", n_resamples=8000, seed=0,
                            interval="bca")
    ref = stats.bootstrap((data,), np.mean, n_resamples=8000, method="BCa",
                          confidence_level=0.95, random_state=1).confidence_interval
    width = ref.high - ref.low
    assert abs(ours.low.iloc[0, 0] - ref.low) < 0.05 * width
    assert abs(ours.high.iloc[0, 0] - ref.high) < 0.05 * width
    plain = bootstrap_matrix(data[None, None], "mean", n_resamples=8000, seed=0)
    assert ours.high.iloc[0, 0] > plain.high.iloc[0, 0]  # right skew moves BCa up


def test_pairwise_matrices_equal_naive_loop():
    rng = np.random.default_rng(2)
    correct = rng.random((3, 50)) < np.array([[0.9], [0.7], [0.5]])
    probs_true = rng.random((3, 50))
    idx = resample_indices(50, 40, 7)
    cases = [
        ("error_consistency", correct, error_consistency_matrix),
        ("zero_one_diversity", correct, zero_one_diversity_matrix),
        ("ce_diversity", probs_true, ce_diversity_matrix),
    ]
    for metric, values, reference in cases:
        result = bootstrap_pairwise(values, metric, n_resamples=40, seed=7, names=["a", "b", "c"])
        x = values.astype(np.float64)
        np.testing.assert_allclose(result.estimate.to_numpy(), reference(x), atol=1e-12)
        with warnings.catch_warnings():  # resamples where a model is right on every image
            warnings.simplefilter("ignore", RuntimeWarning)
            naive = np.stack([reference(x[:, i]) for i in idx])
        np.testing.assert_allclose(result.replicates, naive, atol=1e-12)


def test_error_consistency_degenerate_resamples_are_ignored():
    correct = np.ones((2, 5), bool)
    correct[1, 0] = False  # model 1 wrong on one image only: many resamples are all-right
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning flood from resamples
        result = bootstrap_pairwise(correct, n_resamples=200, seed=0)
    assert np.isnan(result.replicates[:, 0, 1]).any()
    assert np.isnan(result.replicates[:, 0, 1]).sum() < 200


def test_ensemble_gain_matches_ensemble_table_and_naive_resamples():
    rng = np.random.default_rng(4)
    m, n, k = 3, 40, 4
    probs = rng.dirichlet(np.ones(k) * 0.7, size=(m, n))
    labels = rng.integers(0, k, n)
    names = ["a", "b", "c"]
    table = bootstrap_ensemble_gain(probs, labels, names, k=(2, 3), n_resamples=50, seed=9)
    ref = ensemble_table(probs, labels, names, k=(2, 3))
    np.testing.assert_allclose(table["accuracy_gain"], ref["accuracy_gain"], atol=1e-12)
    np.testing.assert_allclose(table["nll_gain"], ref["nll_gain"], atol=1e-12)
    naive = np.stack([ensemble_table(probs[:, i], labels[i], names, k=(2, 3))["nll_gain"]
                      for i in resample_indices(n, 50, 9)])
    np.testing.assert_allclose(table["nll_gain_low"], np.percentile(naive, 2.5, axis=0))
    np.testing.assert_allclose(table["nll_gain_high"], np.percentile(naive, 97.5, axis=0))
    np.testing.assert_allclose(table["nll_gain_p_positive"], (naive > 0).mean(axis=0))


def test_bad_inputs_name_the_problem():
    x = per_image_values()
    with pytest.raises(UserError, match="bootstrap statistic"):
        bootstrap_matrix(x, "mode")
    with pytest.raises(UserError, match="n_resamples"):
        bootstrap_matrix(x, n_resamples=0)
    with pytest.raises(UserError, match="ci"):
        bootstrap_matrix(x, ci=95)
    with pytest.raises(UserError, match="per_image"):
        bootstrap_matrix(x[0])
    with pytest.raises(UserError, match="0/1"):
        bootstrap_pairwise(np.full((2, 3), 0.5))


def test_accepts_a_similarity_result_and_keeps_its_labels():
    import torch

    from xaicompare.compare import similarity_matrix

    maps = torch.rand(3, 12, 6, 6, generator=torch.Generator().manual_seed(0))
    maps[1, 0] = 0.0  # a degenerate map: NaN pair-images, excluded in every resample
    result = similarity_matrix(maps, "cosine", names=["x", "y", "z"])
    boot = bootstrap_matrix(result, "dissimilarity", n_resamples=30, seed=0)
    assert list(boot.estimate.index) == ["x", "y", "z"]
    np.testing.assert_allclose(boot.estimate.to_numpy(), result.dissimilarity.to_numpy(),
                               atol=1e-9)
    assert (boot.low.to_numpy() <= boot.estimate.to_numpy() + 1e-12).all()
