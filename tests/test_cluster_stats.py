"""Family permutation tests (PERMANOVA, Mantel) and ARI, checked by hand and enumeration."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import pearsonr
from sklearn.metrics import adjusted_rand_score

from xaicompare.clustering import adjusted_rand_index, family_permutation_test
from xaicompare.errors import UserError


def frame(values):
    labels = [f"m{i}" for i in range(len(values))]
    return pd.DataFrame(values, index=labels, columns=labels)


def hand_pseudo_f(D, groups):
    """Anderson (2001) written out with loops."""
    n, names = len(groups), sorted(set(groups))
    total = sum(D[i, j] ** 2 for i in range(n) for j in range(i + 1, n)) / n
    within = 0.0
    for g in names:
        members = [i for i in range(n) if groups[i] == g]
        within += sum(D[i, j] ** 2 for i in members for j in members if i < j) / len(members)
    a = len(names)
    return ((total - within) / (a - 1)) / (within / (n - a))


def test_permanova_statistic_by_hand():
    D = np.array([[0, 1, 4, 5], [1, 0, 3, 4], [4, 3, 0, 2], [5, 4, 2, 0]], dtype=float)
    groups = ["cnn", "cnn", "vit", "vit"]
    # by hand: SS_T = (1+16+25+9+16+4)/4 = 17.75; SS_W = 1/2 + 4/2 = 2.5; F = 15.25 / 1.25
    assert hand_pseudo_f(D, groups) == pytest.approx(12.2)
    result = family_permutation_test(frame(D), groups, n_permutations=50)
    assert result["statistic"] == pytest.approx(12.2)


@pytest.mark.parametrize("statistic", ["permanova", "mantel"])
def test_p_value_matches_exact_enumeration(statistic):
    rng = np.random.default_rng(1)
    D = squareform(pdist(rng.normal(size=(6, 3))))
    groups = np.array(["a", "a", "a", "b", "b", "c"])
    i, j = np.triu_indices(6, 1)

    def stat(g):
        if statistic == "permanova":
            return hand_pseudo_f(D, list(g))
        return pearsonr(D[i, j], (g[i] != g[j]).astype(float))[0]

    observed = stat(groups)
    perms = [stat(groups[list(p)]) for p in itertools.permutations(range(6))]
    exact = np.mean(np.array(perms) >= observed - 1e-10)
    result = family_permutation_test(
        frame(D), list(groups), n_permutations=5000, seed=0, statistic=statistic
    )
    assert result["statistic"] == pytest.approx(observed)
    assert result["p_value"] == pytest.approx(exact, abs=0.025)


@pytest.mark.parametrize("statistic", ["permanova", "mantel"])
def test_clear_structure_gives_small_p(statistic):
    rng = np.random.default_rng(2)
    points = np.concatenate([rng.normal(0, 0.2, (5, 3)), rng.normal(2, 0.2, (5, 3))])
    families = {f"m{i}": ("cnn" if i < 5 else "vit") for i in range(10)}
    result = family_permutation_test(frame(squareform(pdist(points))), families, 999, 0, statistic)
    # only 2 of the 252 equally likely labellings separate the clusters: exact p = 2/252
    assert result["p_value"] == pytest.approx(2 / 252, abs=0.006)
    again = family_permutation_test(frame(squareform(pdist(points))), families, 999, 0, statistic)
    assert again == result  # deterministic from the seed


@pytest.mark.parametrize("statistic", ["permanova", "mantel"])
def test_no_structure_gives_roughly_uniform_p(statistic):
    rng = np.random.default_rng(3)
    families = ["a"] * 4 + ["b"] * 4
    pvalues = [
        family_permutation_test(
            frame(squareform(pdist(rng.normal(size=(8, 4))))), families, 99, s, statistic
        )["p_value"]
        for s in range(150)
    ]
    assert 0.4 < np.mean(pvalues) < 0.6
    assert np.mean(np.array(pvalues) <= 0.1) < 0.2
    assert np.mean(np.array(pvalues) <= 0.5) == pytest.approx(0.5, abs=0.15)


def test_invalid_families_rejected():
    D = frame(squareform(pdist(np.arange(4.0)[:, None])))
    with pytest.raises(UserError, match="2 families"):
        family_permutation_test(D, ["a", "b", "c", "d"])
    with pytest.raises(UserError, match="no entry"):
        family_permutation_test(D, {"m0": "a"})
    with pytest.raises(UserError, match="accepted"):
        family_permutation_test(D, ["a", "a", "b", "b"], statistic="anova")


def test_adjusted_rand_index_matches_sklearn():
    clusters = {"a": 1, "b": 1, "c": 2, "d": 2, "e": 2}
    families = {"a": "cnn", "b": "vit", "c": "vit", "d": "vit", "e": "cnn"}
    models = sorted(clusters)
    expected = adjusted_rand_score([families[m] for m in models], [clusters[m] for m in models])
    assert adjusted_rand_index(clusters, families) == pytest.approx(expected)
    assert adjusted_rand_index(clusters, {m: c + 10 for m, c in clusters.items()}) == 1.0
    with pytest.raises(UserError, match="different models"):
        adjusted_rand_index(clusters, {"a": "x"})
