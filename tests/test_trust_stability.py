"""Clustering stability, consensus clustering, and sample-size curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xaicompare.errors import UserError
from xaicompare.trust import (
    cluster_consensus,
    coclustering_frequency,
    consensus_clustering,
    resolution_stability,
    sample_size_curve,
)

NAMES = ["a1", "a2", "a3", "b1", "b2", "b3"]


def grouped_per_image(within, between, noise, n=40, seed=0):
    """[6, 6, N] similarities: two groups of 3 models; self-similarity 1."""
    rng = np.random.default_rng(seed)
    group = np.array([0, 0, 0, 1, 1, 1])
    level = np.where(group[:, None] == group[None, :], within, between)
    x = level[:, :, None] + noise * rng.standard_normal((6, 6, n))
    x = (x + x.transpose(1, 0, 2)) / 2
    x[np.arange(6), np.arange(6)] = 1.0
    return x


@pytest.mark.parametrize("algorithm", ["hierarchical", "louvain"])
def test_perfectly_separated_clusters_always_coclustered(algorithm):
    x = grouped_per_image(within=0.9, between=0.1, noise=0.02)
    freq = coclustering_frequency(x, k=2, algorithm=algorithm, n_resamples=30, seed=0,
                                  names=NAMES)
    expected = np.kron(np.eye(2), np.ones((3, 3)))
    np.testing.assert_array_equal(freq.to_numpy(), expected)
    assert freq.attrs["n_used"] == 30
    assert consensus_clustering(freq, k=2) == {m: 0 if m[0] == "a" else 1 for m in NAMES}
    consensus = cluster_consensus(freq, freq.attrs["reference"])
    assert consensus["consensus"].tolist() == [1.0, 1.0]


def test_ambiguous_clusters_are_less_stable():
    # groups barely differ and per-image noise is large: resamples disagree on the split
    x = grouped_per_image(within=0.52, between=0.5, noise=0.4, n=30, seed=3)
    freq = coclustering_frequency(x, k=2, n_resamples=60, seed=1, names=NAMES)
    off = freq.to_numpy()[~np.eye(6, dtype=bool)]
    assert ((off > 0) & (off < 1)).any()
    assert np.allclose(freq.to_numpy(), freq.to_numpy().T)
    assert np.all(np.diag(freq.to_numpy()) == 1)
    consensus = cluster_consensus(freq, freq.attrs["reference"])
    assert (consensus["consensus"].dropna() < 1).any()


def test_coclustering_frequency_matches_a_naive_loop():
    """Reference: resample images by index, aggregate with compare, cut the tree."""
    from xaicompare.clustering import cluster
    from xaicompare.compare.similarity import aggregate_array
    from xaicompare.trust import resample_indices

    x = grouped_per_image(within=0.55, between=0.45, noise=0.3, n=25, seed=5)
    freq = coclustering_frequency(x, k=2, n_resamples=20, seed=4, names=NAMES)
    together = np.zeros((6, 6))
    for idx in resample_indices(25, 20, 4):
        D = aggregate_array(x[..., idx])["dissimilarity"]
        D = (D + D.T) / 2
        np.fill_diagonal(D, 0)
        cut = cluster(pd.DataFrame(D, index=NAMES, columns=NAMES)).cut(k=2)
        ids = np.array([cut[m] for m in NAMES])
        together += ids[:, None] == ids[None, :]
    np.testing.assert_allclose(freq.to_numpy(), together / 20)


def test_resolution_stability_on_clear_and_on_flat_graphs():
    block = np.kron(np.eye(2), np.full((3, 3), 0.9)) + 0.05
    W = pd.DataFrame(block, index=NAMES, columns=NAMES)
    table = resolution_stability(W, [0.5, 1.0, 1.5], seeds=[0, 1, 2])
    assert table.loc[table.resolution == 1.0, "ari_across_seeds"].item() == 1.0
    assert table.loc[table.resolution == 1.0, "n_communities_max"].item() == 2
    assert table.attrs["ari_overall"] <= 1.0
    rng = np.random.default_rng(0)
    flat = rng.uniform(0.4, 0.6, (6, 6))
    flat = (flat + flat.T) / 2
    W_flat = pd.DataFrame(flat, index=NAMES, columns=NAMES)
    noisy = resolution_stability(W_flat, [1.0, 1.5, 2.0], seeds=range(6))
    assert noisy.attrs["ari_overall"] < 1.0  # no real structure: partitions disagree


def test_sample_size_spread_shrinks_with_n():
    x = grouped_per_image(within=0.7, between=0.3, noise=0.3, n=400, seed=1)
    curve = sample_size_curve(x, sizes=[10, 40, 160, 400], n_subsets=30, seed=0, names=NAMES)
    assert list(curve["n"]) == [10, 40, 160, 400]
    assert np.all(np.diff(curve["spread"]) < 0)
    assert np.all(np.diff(curve["mean_abs_diff"]) < 0)
    # all N images: every subset is the full set
    assert curve["spread"].iloc[-1] < 1e-12 and curve["frobenius"].iloc[-1] < 1e-12
    assert curve["rank_correlation"].iloc[-1] == pytest.approx(1.0)
    # spread of the mean at n images ~ sd / sqrt(n) * finite-population factor (i.i.d. noise)
    mean_curve = sample_size_curve(x, sizes=[40], n_subsets=400, seed=2, statistic="mean")
    sd = np.std(x[np.triu_indices(6, 1)], axis=-1, ddof=1).mean()
    expected = sd / np.sqrt(40) * np.sqrt((400 - 40) / (400 - 1))
    assert mean_curve["spread"].item() == pytest.approx(expected, rel=0.1)


def test_bad_inputs():
    x = grouped_per_image(0.9, 0.1, 0.01)
    with pytest.raises(UserError, match="k="):
        coclustering_frequency(x, k=9)
    with pytest.raises(UserError, match="algorithm"):
        coclustering_frequency(x, k=2, algorithm="kmeans")
    with pytest.raises(UserError, match="sizes"):
        sample_size_curve(x, sizes=[0, 500])
