"""PERMDISP (Anderson 2006) against a direct PCoA implementation, and exact p-values by
enumeration against brute force over every permutation."""

import io
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import f_oneway

from xaicompare.clustering import family_permutation_test
from xaicompare.clustering.stats import all_groupings, count_groupings, mantel_r, pseudo_f
from xaicompare.errors import UserError


def frame(values):
    labels = [f"m{i}" for i in range(len(values))]
    return pd.DataFrame(values, index=labels, columns=labels)


def pcoa_centroid_distances(D, groups):
    """Direct: principal coordinates of D (positive and negative eigenvalue axes), each
    model's distance to its group centroid, sqrt(|positive part - negative part|)."""
    n = len(D)
    centre = np.eye(n) - np.ones((n, n)) / n
    gower = -0.5 * centre @ (D**2) @ centre
    eigenvalues, vectors = np.linalg.eigh(gower)
    keep = np.abs(eigenvalues) > 1e-10 * np.abs(eigenvalues).max()
    coords = vectors[:, keep] * np.sqrt(np.abs(eigenvalues[keep]))
    negative = eigenvalues[keep] < 0
    z = np.empty(n)
    for g in set(groups):
        members = [i for i in range(n) if groups[i] == g]
        centroid = coords[members].mean(axis=0)
        for i in members:
            diff2 = (coords[i] - centroid) ** 2
            z[i] = np.sqrt(abs(diff2[~negative].sum() - diff2[negative].sum()))
    return z


def direct_permdisp(D, groups):
    """F of z by scipy's one-way ANOVA; exact p over every regrouping of the residuals
    z - group mean (Anderson 2006), the observed grouping contributing the observed F."""
    groups = np.asarray(groups)
    names = sorted(set(groups))
    z = pcoa_centroid_distances(D, list(groups))
    observed = f_oneway(*[z[groups == g] for g in names]).statistic
    residuals = z - np.array([z[groups == g].mean() for g in groups])
    regroupings = {tuple(groups[list(p)]) for p in itertools.permutations(range(len(groups)))}
    count = 0
    for regrouped in map(np.array, regroupings):
        if (regrouped == groups).all():
            f = observed
        else:
            f = f_oneway(*[residuals[regrouped == g] for g in names]).statistic
        count += f >= observed - 1e-10 * observed
    return observed, count / len(regroupings), z


@pytest.mark.parametrize("euclidean", [True, False])
def test_permdisp_matches_the_direct_pcoa_implementation(euclidean):
    rng = np.random.default_rng(4)
    groups = ["cnn"] * 3 + ["vit"] * 3 + ["mlp"] * 2
    if euclidean:
        points = rng.normal(size=(8, 3)) * np.array([0.3] * 3 + [1.5] * 3 + [0.8] * 2)[:, None]
        D = squareform(pdist(points))
    else:  # a dissimilarity with negative PCoA eigenvalues
        D = squareform(rng.random(28) + 0.2)
        centre = np.eye(8) - 1 / 8
        assert np.linalg.eigvalsh(-0.5 * centre @ D**2 @ centre).min() < -1e-6
    observed, p, z = direct_permdisp(D, groups)
    result = family_permutation_test(frame(D), groups, statistic="permdisp")
    assert result["exact"] and result["n_permutations"] == 560  # 8! / (3! 3! 2!)
    assert result["statistic"] == pytest.approx(observed, rel=1e-9)
    assert result["p_value"] == pytest.approx(p, abs=1e-12)
    for name in ("cnn", "vit", "mlp"):
        members = [i for i, g in enumerate(groups) if g == name]
        assert result["dispersion"][name] == pytest.approx(z[members].mean(), rel=1e-9)


@pytest.mark.parametrize("statistic", ["permanova", "mantel"])
def test_exact_p_equals_brute_force_over_every_permutation(statistic):
    rng = np.random.default_rng(5)
    D = squareform(pdist(rng.normal(size=(7, 2))))
    groups = np.array(["a", "a", "a", "b", "b", "c", "c"])
    exact = family_permutation_test(frame(D), list(groups), statistic=statistic, exact=True)
    perms = np.array(list(itertools.permutations(range(7))))  # all 5040, with repeats
    regrouped = groups[perms]
    if statistic == "permanova":  # the statistic itself is checked by hand elsewhere
        onehot = (regrouped[:, :, None] == np.array(["a", "b", "c"])).astype(float)
        stats = pseudo_f(D**2, onehot)
    else:
        i, j = np.triu_indices(7, 1)
        stats = mantel_r(D[i, j], (regrouped[:, i] != regrouped[:, j]).astype(float))
    brute = np.mean(stats >= exact["statistic"] - 1e-10 * abs(exact["statistic"]))
    assert exact["p_value"] == pytest.approx(brute, abs=1e-12)
    assert exact["n_permutations"] == 210


def test_groupings_are_counted_and_enumerated_once():
    codes = np.array([0] * 9 + [1] * 5)  # the published 14 models: 9 CNNs, 5 transformers
    assert count_groupings(codes) == math.comb(14, 5) == 2002
    small = np.array([0, 0, 1, 1, 1, 2])
    rows = all_groupings(small)
    assert len(rows) == count_groupings(small) == 60
    assert len({tuple(r) for r in rows}) == 60
    assert all(np.array_equal(np.bincount(r), [2, 3, 1]) for r in rows)
    assert any(np.array_equal(r, small) for r in rows)
    big = np.repeat(np.arange(3), [6, 5, 5])  # 16! / (6! 5! 5!) = 2,018,016: random permutations
    D = squareform(pdist(np.random.default_rng(0).normal(size=(16, 2))))
    result = family_permutation_test(frame(D), list(big), n_permutations=99)
    assert not result["exact"] and result["n_permutations"] == 99


def test_spread_and_location_are_told_apart():
    rng = np.random.default_rng(6)
    families = ["cnn"] * 6 + ["vit"] * 6
    # same centre, the transformers spread 4x wider: a dispersion effect only
    spread = np.concatenate([rng.normal(0, 0.25, (6, 3)), rng.normal(0, 1.0, (6, 3))])
    # same spread, the centres apart: a location effect only
    shifted = np.concatenate([rng.normal(0, 0.5, (6, 3)), rng.normal(1.5, 0.5, (6, 3))])
    disp = family_permutation_test(frame(squareform(pdist(spread))), families,
                                   statistic="permdisp")
    assert disp["exact"] and disp["p_value"] < 0.01
    assert disp["dispersion"]["vit"] > 2 * disp["dispersion"]["cnn"]
    location = family_permutation_test(frame(squareform(pdist(shifted))), families)
    no_disp = family_permutation_test(frame(squareform(pdist(shifted))), families,
                                      statistic="permdisp")
    assert location["p_value"] < 0.01 and no_disp["p_value"] > 0.1


def test_the_stage_writes_both_tests_and_the_report_reads_them_in_words():
    from types import SimpleNamespace

    from xaicompare.clustering import cluster, read_family_tests
    from xaicompare.stages.cluster import family_tests
    from xaicompare.stages.report import family_tests_in_words

    rng = np.random.default_rng(6)
    spread = np.concatenate([rng.normal(0, 0.25, (6, 3)), rng.normal(0, 1.0, (6, 3))])
    D = frame(squareform(pdist(spread)))
    families = {m: ("cnn" if i < 6 else "transformer") for i, m in enumerate(D.index)}
    parts = {m: 0 for m in D.index}
    assignments = pd.DataFrame({"family": pd.Series(families)})
    tests = family_tests(D, cluster(D), parts, assignments, families,
                         SimpleNamespace(permutations=99), seed=0)
    assert {"permanova", "permdisp", "mantel"} <= set(tests.index)
    assert tests.loc["permdisp", "exact"] and tests.loc["permdisp", "n_permutations"] == 924
    # through the CSV the stage writes, as the report reads it
    text = family_tests_in_words(pd.read_csv(io.StringIO(tests.to_csv()),
                                             index_col=0))
    assert "PERMDISP p=" in text and "differ in spread" in text and "924 groupings" in text
    assert "transformer" in text
    # every branch of the reading
    assert "but PERMDISP" in read_family_tests(0.014, 0.01)
    assert "not necessarily in location" in read_family_tests(0.014, 0.01)
    assert "differ in location" in read_family_tests(0.01, 0.6)
    assert "no difference in location detected" in read_family_tests(0.3, 0.02)
    assert "no difference between the families" in read_family_tests(0.3, 0.4)


def test_undefined_dispersion_test_gives_nan_not_zero_and_huge_exact_is_refused():
    D = frame(np.array([[0, 1, 2, 2], [1, 0, 2, 2], [2, 2, 0, 1], [2, 2, 1, 0]], float))
    # two families of two at equal inner distance: no spread differences inside, F = 0/0
    result = family_permutation_test(D, ["a", "a", "b", "b"], statistic="permdisp")
    assert np.isnan(result["statistic"]) and np.isnan(result["p_value"])
    big = np.repeat(np.arange(4), 6)  # 24! / (6!)^4: far too many to enumerate
    D = frame(squareform(pdist(np.random.default_rng(1).normal(size=(24, 2)))))
    with pytest.raises(UserError, match="exact=True would enumerate"):
        family_permutation_test(D, list(big), exact=True)
    from xaicompare.clustering import read_family_tests

    assert "cannot be told apart" in read_family_tests(0.01, float("nan"))


def test_statistics_equal_scikit_bio():
    """skbio: the same PERMDISP F (test='centroid', all PCoA axes of a Euclidean D) and
    PERMANOVA pseudo-F and random-permutation p. skbio's PERMDISP p permutes the labels and
    recomputes the centroids; ours permutes residuals (Anderson 2006, vegan), so p differs."""
    distance = pytest.importorskip("skbio.stats.distance")
    rng = np.random.default_rng(4)
    groups = ["cnn"] * 3 + ["vit"] * 3 + ["mlp"] * 2
    points = rng.normal(size=(8, 3)) * np.array([0.3] * 3 + [1.5] * 3 + [0.8] * 2)[:, None]
    D = squareform(pdist(points))
    matrix = distance.DistanceMatrix(D, ids=[f"m{i}" for i in range(8)])
    disp = distance.permdisp(matrix, groups, test="centroid", permutations=99, dimensions=7,
                             seed=0)
    ours = family_permutation_test(frame(D), groups, statistic="permdisp")
    assert ours["statistic"] == pytest.approx(disp["test statistic"], rel=1e-10)
    for seed in (0, 1):
        theirs = distance.permanova(matrix, groups, permutations=999, seed=seed)
        mine = family_permutation_test(frame(D), groups, 999, seed, "permanova", exact=False)
        assert mine["statistic"] == pytest.approx(theirs["test statistic"], rel=1e-10)
        assert mine["p_value"] == pytest.approx(theirs["p-value"], abs=1e-12)
