"""Vectorised models x models matrices equal a straightforward per-pair loop."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from xaicompare.compare import (
    CompareOptions,
    cross_method_similarity,
    image_filter,
    similarity,
    similarity_matrix,
)
from xaicompare.errors import UserError

M, N = 4, 5
NAMES = ["resnet", "vit", "mixer", "convnext"]


@pytest.fixture
def maps():
    return np.random.default_rng(0).normal(size=(M, N, 6, 6))


def minmax(x):
    return (x - x.min()) / (x.max() - x.min())


def cos(x, y):
    return np.dot(x, y) / np.linalg.norm(x) / np.linalg.norm(y)


def classes(x):
    return (minmax(x) >= 0.4).astype(int) + (minmax(x) >= 0.7).astype(int)


def topk_agreement(x, y, k=4):
    top = lambda v: set(np.argsort(-np.abs(v))[:k])  # noqa: E731
    return len(top(x) & top(y)) / k


# Independent per-pair references: numpy / scipy / sklearn, one image at a time.
REFERENCES = {
    "cosine": ({}, cos),
    "pearson": ({}, lambda x, y: np.corrcoef(x, y)[0, 1]),
    "spearman": ({}, lambda x, y: spearmanr(x, y)[0]),
    "rbf": ({"sigma": 0.8}, lambda x, y: math.exp(-np.mean((x - y) ** 2) / (2 * 0.8**2))),
    "kappa": ({"thresholds": [0.4, 0.7]}, lambda x, y: cohen_kappa_score(classes(x), classes(y))),
    "topk": ({"k": 4}, topk_agreement),
}


def loop_matrix(maps, fn):
    out = np.empty((maps.shape[0], maps.shape[0], maps.shape[1]))
    for i in range(maps.shape[0]):
        for j in range(maps.shape[0]):
            for n in range(maps.shape[1]):
                out[i, j, n] = fn(maps[i, n].ravel(), maps[j, n].ravel())
    return out


@pytest.mark.parametrize("metric", sorted(REFERENCES))
def test_vectorised_matrix_equals_per_pair_loop(maps, metric):
    options, fn = REFERENCES[metric]
    result = similarity_matrix(maps, metric, names=NAMES, chunk_images=2, **options)
    expected = loop_matrix(maps, fn)
    assert np.allclose(result.per_image, expected)
    assert isinstance(result.mean, pd.DataFrame)
    assert list(result.mean.index) == NAMES and list(result.mean.columns) == NAMES
    assert np.allclose(result.mean.to_numpy(), expected.mean(-1))
    assert np.allclose(result.std.to_numpy(), expected.std(-1))
    assert np.allclose(result.median.to_numpy(), np.median(expected, -1))
    dis = np.sqrt((1 - expected.mean(-1)) ** 2 + expected.std(-1) ** 2)
    assert np.allclose(result.dissimilarity.to_numpy(), dis)
    assert (result.n.to_numpy() == N).all()


def test_rbf_median_sigma_over_distinct_pairs(maps):
    result = similarity_matrix(maps, "rbf", sigma="median")
    dists = [
        np.sqrt(np.mean((maps[i, n] - maps[j, n]) ** 2))
        for i in range(M)
        for j in range(i + 1, M)
        for n in range(N)
    ]
    sigma = np.median(dists)
    assert result.params["sigma"] == pytest.approx(sigma)
    assert result.provenance()["metric.sigma"] == pytest.approx(sigma)
    # same value as the pairwise function given that sigma explicitly
    assert np.allclose(result.per_image[0, 2], similarity(maps[0], maps[2], "rbf", sigma=sigma))


def test_float16_torch_storage_matches_float64(maps):
    exact = similarity_matrix(maps, "cosine")
    half = similarity_matrix(torch.from_numpy(maps).half(), "cosine")
    assert np.allclose(half.per_image, exact.per_image, atol=2e-3)


def test_dict_input_and_names(maps):
    result = similarity_matrix({name: maps[i] for i, name in enumerate(NAMES)}, "cosine")
    assert result.rows == NAMES
    with pytest.raises(UserError, match="distinct"):
        similarity_matrix(maps, names=["a", "a", "b", "c"])
    with pytest.raises(UserError, match=r"\[M, N, H, W\]"):
        similarity_matrix(maps[0, 0])


def test_degenerate_map_excluded_and_counted(maps):
    maps = maps.copy()
    maps[1, 3] = 0.0
    result = similarity_matrix(maps, "cosine", names=NAMES)
    assert np.isnan(result.per_image[1, :, 3]).all() and np.isnan(result.per_image[:, 1, 3]).all()
    assert np.isfinite(result.per_image[0, 2]).all()
    assert result.n.loc["vit", "resnet"] == N - 1 and result.n.loc["resnet", "mixer"] == N
    assert result.n_degenerate.loc["vit", "mixer"] == 1
    assert result.degenerate.to_dict("records") == [
        {"maps": "a", "model": "vit", "image": 3, "reason": "all-zero"}
    ]
    # the aggregate over the remaining images equals the loop over them
    keep = [0, 1, 2, 4]
    expected = [cos(maps[0, n].ravel(), maps[1, n].ravel()) for n in keep]
    assert result.mean.loc["resnet", "vit"] == pytest.approx(np.mean(expected))
    with pytest.raises(UserError, match="vit/image 3"):
        similarity_matrix(maps, names=NAMES, options=CompareOptions(degenerate="raise"))


def test_filters_from_predictions(maps):
    preds = np.array([[0, 1, 2, 3, 4], [0, 1, 2, 0, 0], [0, 1, 9, 3, 4], [0, 1, 2, 3, 1]])
    labels = np.array([0, 1, 2, 3, 4])
    both = image_filter("both_correct", preds, labels)
    assert both.shape == (M, M, N)
    assert both[0, 1].tolist() == [True, True, True, False, False]
    assert image_filter("all_agree", preds).tolist() == [True, True, False, False, False]
    assert image_filter("disagree", preds).tolist() == [False, False, True, True, True]
    assert image_filter("both_same_prediction", preds)[0, 2].tolist() == [
        True,
        True,
        False,
        True,
        True,
    ]

    result = similarity_matrix(
        maps, "cosine", {"filter": "both_correct"}, preds=preds, labels=labels
    )
    assert result.n.to_numpy()[0, 1] == 3 and result.n_filtered.to_numpy()[0, 1] == 2
    assert np.isnan(result.per_image[0, 1, 3:]).all()
    assert result.options["filter"] == "both_correct"

    agree = similarity_matrix(maps, "cosine", {"filter": "all_agree"}, preds=preds)
    assert (agree.n.to_numpy() == 2).all()
    full = similarity_matrix(maps, "cosine")
    assert np.allclose(agree.per_image[:, :, :2], full.per_image[:, :, :2])
    with pytest.raises(UserError, match="labels"):
        similarity_matrix(maps, "cosine", {"filter": "both_correct"}, preds=preds)
    custom = similarity_matrix(maps, "cosine", image_mask=[True, False, True, False, True])
    assert custom.options["filter"] == "custom" and (custom.n.to_numpy() == 3).all()


def test_cross_method_diagonal_is_same_model_similarity(maps):
    other = maps + np.random.default_rng(5).normal(scale=0.5, size=maps.shape)
    result = cross_method_similarity(maps, other, "spearman", names=NAMES)
    for i, name in enumerate(NAMES):
        expected = similarity(maps[i], other[i], "spearman")
        assert np.allclose(result.per_image[i, i], expected)
        assert result.diagonal().loc[name, "mean"] == pytest.approx(expected.mean())
    assert np.allclose(result.per_image[0, 1], similarity(maps[0], other[1], "spearman"))


def test_superpixel_matrix_matches_pairwise(maps):
    segments = np.random.default_rng(4).integers(0, 4 + np.arange(N)[:, None, None], size=(N, 6, 6))
    options = {"resolution": "superpixels", "normalization": "minmax"}
    result = similarity_matrix(maps, "cosine", options, segments=segments, chunk_images=3)
    for i in range(M):
        for j in range(M):
            expected = similarity(maps[i], maps[j], options=options, segments=segments)
            assert np.allclose(result.per_image[i, j], expected)


def test_summary_and_provenance(maps):
    result = similarity_matrix(maps, "kappa", {"normalization": "abs"}, names=NAMES, top_p=[20])
    table = result.summary()
    assert len(table) == M * M and {"model_a", "model_b", "dissimilarity", "n"} <= set(
        table.columns
    )
    prov = result.provenance()
    assert prov["metric"] == "kappa" and prov["metric.top_p"] == [20.0]
    assert prov["normalization"] == "abs" and prov["n_images"] == N
