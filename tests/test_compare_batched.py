"""The fast paths of the compare engine give the same numbers as plain references.

Covered: the one-pass degenerate check against the exact min/max check, the blocked Gram
product (features a multiple of GRAM_BLOCK) against numpy in float64, in-place
normalisation of the engine's own buffer (never of the caller's maps), automatic chunk
sizes, and several metrics in one pass against one call per metric.
"""

import numpy as np
import pytest
import torch
from sklearn.metrics import cohen_kappa_score

from xaicompare.compare import (
    cross_method_similarity,
    normalize,
    similarity,
    similarity_matrices,
    similarity_matrix,
)
from xaicompare.compare.metrics import GRAM_BLOCK
from xaicompare.compare.preprocess import degenerate_codes, exact_degenerate_codes
from xaicompare.errors import UserError


def test_one_pass_degenerate_codes_equal_the_exact_check():
    dim = 300
    rows = {
        "fine": np.random.default_rng(0).normal(size=dim),
        "all-zero": np.zeros(dim),
        "constant": np.full(dim, 2.5),
        "nan off the probes": np.r_[np.ones(dim - 2), np.nan, 1.0],
        "+inf": np.r_[np.arange(dim - 1.0), np.inf],
        "-inf": np.r_[-np.inf, np.arange(dim - 1.0)],
        "flat but one value off the probes": np.r_[np.zeros(7), 1e-3, np.zeros(dim - 8)],
        "finite, sum overflows float32": np.full(dim, 3e38) * np.r_[1, 0.5, np.ones(dim - 2)],
        "tiny values": np.r_[1e-42, np.full(dim - 1, 2e-42)],
    }
    x = torch.tensor(np.stack(list(rows.values())), dtype=torch.float32)[None]  # [1, 9, D]
    expected = [0, 2, 3, 1, 1, 1, 0, 0, 0]  # DEGENERATE_REASONS, by hand
    assert exact_degenerate_codes(x)[0].tolist() == expected
    assert degenerate_codes(x)[0].tolist() == expected
    assert degenerate_codes(x.double())[0].tolist() == expected
    single = torch.tensor([[[5.0]], [[0.0]]])  # one feature: constant by definition
    assert degenerate_codes(single).tolist() == exact_degenerate_codes(single).tolist()


def cosine_loop(a, b):
    """float64 per pair per image: [M, K, N]."""
    a = a.reshape(*a.shape[:2], -1).astype(np.float64)
    b = b.reshape(*b.shape[:2], -1).astype(np.float64)
    dots = np.einsum("mnd,knd->mkn", a, b)
    return dots / (np.linalg.norm(a, axis=-1)[:, None] * np.linalg.norm(b, axis=-1)[None])


@pytest.fixture
def wide_maps():
    """3 models x 5 images of 32 x 64 = 2 * GRAM_BLOCK features (the blocked Gram path)."""
    assert 32 * 64 == 2 * GRAM_BLOCK
    return np.random.default_rng(1).normal(size=(3, 5, 32, 64)).astype(np.float16)


@pytest.mark.parametrize("chunk_images", [1, 2, 5])  # 2: a partial last chunk (a strided view)
def test_blocked_gram_matches_float64_loop(wide_maps, chunk_images):
    result = similarity_matrix(wide_maps, "cosine", chunk_images=chunk_images)
    assert np.allclose(result.per_image, cosine_loop(wide_maps, wide_maps), atol=1e-6)
    other = np.random.default_rng(2).normal(size=wide_maps.shape).astype(np.float16)
    cross = cross_method_similarity(wide_maps, other, "cosine", chunk_images=chunk_images)
    assert np.allclose(cross.per_image, cosine_loop(wide_maps, other), atol=1e-6)
    pair = similarity(wide_maps[0], other[2], "cosine")
    assert np.allclose(pair, cosine_loop(wide_maps[:1], other[2:3])[0, 0], atol=1e-6)


def test_blocked_gram_with_skipped_images(wide_maps):
    keep = [True, False, True, True, False]  # images 0, 2, 3: not one slice of the stack
    result = similarity_matrix(wide_maps, "cosine", image_mask=keep, chunk_images=2)
    expected = cosine_loop(wide_maps, wide_maps)
    assert np.allclose(result.per_image[:, :, keep], expected[:, :, keep], atol=1e-6)
    assert np.isnan(result.per_image[:, :, [1, 4]]).all()


@pytest.mark.parametrize(
    "options", [{"thresholds": 0.5}, {"top_p": 25}, {"thresholds": [0.3, 0.6]}]
)
def test_kappa_matrix_matches_sklearn(wide_maps, options):
    """Two classes take the one-product path, three the one-hot labels path."""
    flat = wide_maps.reshape(3, 5, -1).astype(np.float64)

    def classes(x):
        if "top_p" in options:  # above the (n_top + 1)-th largest value (float16: ties)
            return (x > np.sort(x)[::-1][round(options["top_p"] / 100 * x.size)]).astype(int)
        scaled = (x - x.min()) / (x.max() - x.min())
        return sum((scaled >= t).astype(int) for t in np.atleast_1d(options["thresholds"]))

    kappa = similarity_matrix(wide_maps, "kappa", chunk_images=2, **options)
    for i in range(3):
        for j in range(3):
            for n in range(5):
                expected = cohen_kappa_score(classes(flat[i, n]), classes(flat[j, n]))
                assert kappa.per_image[i, j, n] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("how", ["abs", "minmax", "maxabs", "l1", "l2", "rank"])
def test_normalisation_never_changes_the_callers_maps(how):
    maps = torch.randn(3, 4, 6, 6)  # float32: the engine could have used it as its buffer
    before = maps.clone()
    similarity_matrix(maps, "cosine", {"normalization": how})
    similarity(maps[0], maps[1], "pearson", options={"normalization": how})
    normalize(maps.reshape(12, 36), how)
    assert torch.equal(maps, before)


def test_automatic_chunks_equal_one_image_chunks():
    maps = np.random.default_rng(3).normal(size=(4, 7, 8, 8))
    auto = similarity_matrix(maps, "spearman")
    single = similarity_matrix(maps, "spearman", chunk_images=1)
    assert np.allclose(auto.per_image, single.per_image)
    for bad in (0, 2.5):
        with pytest.raises(UserError, match="chunk_images"):
            similarity_matrix(maps, chunk_images=bad)


def test_several_metrics_in_one_pass_equal_one_call_each():
    maps = np.random.default_rng(4).normal(size=(4, 6, 8, 8))
    maps[2, 1] = 0.0  # a degenerate map: excluded for every metric
    metrics = {"pearson": {}, "cosine": {}, "rbf": {"sigma": "median"}, "kappa": {"top_p": 20}}
    options = {"normalization": "minmax"}
    together = similarity_matrices(maps, metrics, options, chunk_images=4)
    assert list(together) == list(metrics)
    for name, metric_options in metrics.items():
        alone = similarity_matrix(maps, name, options, **metric_options)
        np.testing.assert_allclose(together[name].per_image, alone.per_image)
        assert together[name].params == alone.params
        assert together[name].n_degenerate.equals(alone.n_degenerate)
    assert list(similarity_matrices(maps, ["cosine", "topk"])) == ["cosine", "topk"]
    with pytest.raises(UserError, match="distinct"):
        similarity_matrices(maps, ["cosine", "cosine"])
    with pytest.raises(UserError, match="list or dict"):
        similarity_matrices(maps, "cosine")
