"""Per-image similarity metrics against independent references (numpy, scipy, sklearn)."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, rankdata, spearmanr
from sklearn.metrics import cohen_kappa_score

from xaicompare.compare import (
    CompareOptions,
    aggregate,
    dissimilarity,
    normalize,
    pooled_kappa,
    similarity,
)
from xaicompare.errors import UserError


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 8, 8)), rng.normal(size=(6, 8, 8))


def minmax(x):
    return (x - x.min()) / (x.max() - x.min())


def test_cosine_identical_orthogonal_and_hand(pair):
    a, b = pair
    assert np.allclose(similarity(a, a), 1.0)
    e1 = np.zeros((1, 4, 4))
    e1[0, 0, 0] = 1
    e2 = np.zeros((1, 4, 4))
    e2[0, 3, 3] = 2
    assert similarity(e1, e2)[0] == pytest.approx(0.0)
    expected = [
        np.dot(x.ravel(), y.ravel()) / np.linalg.norm(x) / np.linalg.norm(y)
        for x, y in zip(a, b, strict=True)
    ]
    assert np.allclose(similarity(a, b, "cosine"), expected)


def test_numpy_in_numpy_out_torch_in_torch_out(pair):
    a, b = pair
    out = similarity(a, b)
    assert isinstance(out, np.ndarray) and out.shape == (6,)
    out_t = similarity(torch.from_numpy(a), torch.from_numpy(b))
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (6,)
    assert np.allclose(out_t.numpy(), out)
    # [B, D] input is accepted too
    assert np.allclose(similarity(a.reshape(6, -1), b.reshape(6, -1)), out)


def test_pearson_and_spearman_match_scipy(pair):
    a, b = pair
    assert np.allclose(
        similarity(a, b, "pearson"),
        [pearsonr(x.ravel(), y.ravel())[0] for x, y in zip(a, b, strict=True)],
    )
    assert np.allclose(
        similarity(a, b, "spearman"),
        [spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(a, b, strict=True)],
    )
    # with many ties (integer maps), average ranks must match scipy too
    rng = np.random.default_rng(1)
    ta, tb = (
        rng.integers(0, 4, (5, 6, 6)).astype(float),
        rng.integers(0, 4, (5, 6, 6)).astype(float),
    )
    expected = [spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(ta, tb, strict=True)]
    assert np.allclose(similarity(ta, tb, "spearman"), expected)


def rms(x, y):
    return np.sqrt(np.mean((x - y) ** 2))


def test_rbf_fixed_sigma_hand_and_resolution_independent(pair):
    a, b = pair
    sigma = 0.7
    expected = [math.exp(-(rms(x, y) ** 2) / (2 * sigma**2)) for x, y in zip(a, b, strict=True)]
    assert np.allclose(similarity(a, b, "rbf", sigma=sigma), expected)
    # 2x nearest upsampling keeps the RMS difference, so the value must not change
    up = lambda x: x.repeat(2, axis=1).repeat(2, axis=2)  # noqa: E731
    assert np.allclose(similarity(up(a), up(b), "rbf", sigma=sigma), expected)


def test_rbf_median_sigma_is_recorded(pair):
    a, b = pair
    values, details = similarity(a, b, "rbf", sigma="median", return_details=True)
    sigma = np.median([rms(x, y) for x, y in zip(a, b, strict=True)])
    assert details.params["sigma"] == pytest.approx(sigma)
    assert details.params["sigma_rule"] == "median"
    assert np.allclose(
        values, [math.exp(-(rms(x, y) ** 2) / (2 * sigma**2)) for x, y in zip(a, b, strict=True)]
    )


@pytest.mark.parametrize("thresholds", [[0.5], [0.4, 0.7]])
def test_kappa_absolute_thresholds_match_sklearn(pair, thresholds):
    a, b = pair

    def classes(x):
        return sum((minmax(x) >= t).astype(int) for t in thresholds).ravel()

    expected = [cohen_kappa_score(classes(x), classes(y)) for x, y in zip(a, b, strict=True)]
    assert np.allclose(similarity(a, b, "kappa", thresholds=thresholds), expected)
    pooled = cohen_kappa_score(
        np.concatenate([classes(x) for x in a]), np.concatenate([classes(y) for y in b])
    )
    assert pooled_kappa(a, b, thresholds=thresholds) == pytest.approx(pooled)


def test_kappa_top_p_uses_rank_thresholds_independent_of_scale(pair):
    a, b = pair  # continuous values, no ties: top 25% of 64 pixels = exactly 16

    def classes(x, p_list):
        order = np.argsort(-x.ravel())
        labels = np.zeros(x.size, dtype=int)
        for p in p_list:
            labels[order[: round(p / 100 * x.size)]] += 1
        return labels

    for p_list in ([25], [10, 30]):
        expected = [
            cohen_kappa_score(classes(x, p_list), classes(y, p_list))
            for x, y in zip(a, b, strict=True)
        ]
        got = similarity(a, b, "kappa", top_p=p_list)
        assert np.allclose(got, expected)
        # a monotone rescaling of one side changes nothing with percentage thresholds
        assert np.allclose(similarity(a, 100 * b + 3, "kappa", top_p=p_list), got)


def test_kappa_options_validated(pair):
    a, b = pair
    with pytest.raises(UserError, match="not both"):
        similarity(a, b, "kappa", thresholds=[0.5], top_p=[10])
    with pytest.raises(UserError, match="thresholds"):
        similarity(a, b, "kappa", thresholds=[0.7, 0.4])
    with pytest.raises(UserError, match="unknown option"):
        similarity(a, b, "cosine", sigma=1.0)
    with pytest.raises(UserError, match="accepted: .*cosine"):
        similarity(a, b, "cosinus")


def test_topk_feature_and_sign_agreement_by_hand(pair):
    a, b = pair
    k = 10

    def top(x):
        return set(np.argsort(-np.abs(x.ravel()))[:k])

    feature = [len(top(x) & top(y)) / k for x, y in zip(a, b, strict=True)]
    sign = [
        sum(np.sign(x.ravel()[f]) == np.sign(y.ravel()[f]) for f in top(x) & top(y)) / k
        for x, y in zip(a, b, strict=True)
    ]
    assert np.allclose(similarity(a, b, "topk", k=k), feature)
    assert np.allclose(similarity(a, b, "topk_sign", k=k), sign)
    assert np.allclose(similarity(a, a, "topk", fraction=0.2), 1.0)


def test_dissimilarity_formula_and_aggregate():
    assert dissimilarity(np.ones(5)) == 0.0
    assert dissimilarity([0.5, 0.5]) == pytest.approx(0.5)
    assert dissimilarity([0.0, 1.0]) == pytest.approx(math.sqrt(0.5**2 + 0.5**2))
    summary = aggregate([0.2, np.nan, 0.6, 1.0])
    assert summary["n"] == 3
    assert summary["mean"] == pytest.approx(0.6)
    assert summary["median"] == pytest.approx(0.6)
    assert summary["std"] == pytest.approx(np.std([0.2, 0.6, 1.0]))
    assert summary["dissimilarity"] == pytest.approx(
        math.sqrt(0.4**2 + np.std([0.2, 0.6, 1.0]) ** 2)
    )
    assert np.isnan(aggregate([np.nan])["mean"]) and aggregate([np.nan])["n"] == 0


def test_degenerate_maps_are_reported_never_silently_zero(pair):
    a, b = pair
    a, b = a.copy(), b.copy()
    a[1] = 0.0  # all-zero
    b[3] = 2.5  # constant
    a[4, 2, 2] = np.nan  # non-finite
    values, details = similarity(a, b, "cosine", return_details=True)
    assert np.isnan(values[[1, 3, 4]]).all() and np.isfinite(values[[0, 2, 5]]).all()
    reasons = {(d["model"], d["image"]): d["reason"] for d in details.degenerate}
    assert reasons == {("a", 1): "all-zero", ("b", 3): "constant", ("a", 4): "non-finite"}
    assert details.n_excluded == 3
    assert aggregate(values)["n"] == 3
    zeroed = similarity(a, b, options=CompareOptions(degenerate="zero"))
    assert (zeroed[[1, 3, 4]] == 0).all() and np.allclose(zeroed[[0, 2, 5]], values[[0, 2, 5]])
    with pytest.raises(UserError, match="image 1"):
        similarity(a, b, options={"degenerate": "raise"})


def test_abs_normalization_making_a_map_constant_is_degenerate():
    a = np.array([[1.0, -1.0, 1.0, -1.0]])
    b = np.array([[1.0, 2.0, 3.0, 4.0]])
    values, details = similarity(
        a, b, "kappa", options={"normalization": "abs"}, return_details=True
    )
    assert np.isnan(values[0])
    assert details.degenerate[0]["reason"] == "degenerate after normalization"


@pytest.mark.parametrize(
    "how, reference",
    [
        ("abs", np.abs),
        ("minmax", minmax),
        ("maxabs", lambda x: x / np.abs(x).max()),
        ("l1", lambda x: x / np.abs(x).sum()),
        ("l2", lambda x: x / np.linalg.norm(x)),
        ("rank", lambda x: rankdata(x) / x.size),
    ],
)
def test_normalizations_match_numpy(how, reference):
    x = np.random.default_rng(2).normal(size=(3, 20)).round(1)  # rounding creates ties
    got = normalize(torch.from_numpy(x), how).numpy()
    assert np.allclose(got, np.stack([reference(row) for row in x]))


def test_superpixel_resolution_is_mean_per_segment(pair):
    a, b = pair
    rng = np.random.default_rng(3)
    segments = rng.integers(0, 5, size=(6, 8, 8))
    segments[0][segments[0] == 4] = 3  # image 0 has only 4 segments: groups of unequal size

    def means(x, s):
        return np.array([x[s == v].mean() for v in np.unique(s)])

    expected = [
        np.dot(means(x, s), means(y, s)) / np.linalg.norm(means(x, s)) / np.linalg.norm(means(y, s))
        for x, y, s in zip(a, b, segments, strict=True)
    ]
    got = similarity(a, b, options={"resolution": "superpixels"}, segments=segments)
    assert np.allclose(got, expected)
    with pytest.raises(UserError, match="segments"):
        similarity(a, b, options={"resolution": "superpixels"})


def test_pixel_resolution_area_is_block_mean(pair):
    a, b = pair

    def blocks(x):
        return x.reshape(4, 2, 4, 2).mean(axis=(1, 3)).ravel()

    expected = [np.corrcoef(blocks(x), blocks(y))[0, 1] for x, y in zip(a, b, strict=True)]
    options = CompareOptions(resolution="pixels", size=(4, 4), resample="area")
    assert np.allclose(similarity(a, b, "pearson", options=options), expected)
    assert options.to_dict()["size"] == [4, 4]
    with pytest.raises(UserError, match="size"):
        CompareOptions(resolution="pixels")
    with pytest.raises(UserError, match="accepted"):
        CompareOptions(normalization="softmax")
