"""Disagreement-problem metrics against direct implementations of Krishna et al.'s definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xaicompare.compare import METRICS, similarity, similarity_matrices


def _top(e: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-np.abs(e), kind="stable")[:k]]


def _krishna(a: np.ndarray, b: np.ndarray, k: int, kind: str) -> float:
    """Definitions 1-4 of Krishna et al. (2022), one pair of explanations, plain Python."""
    ta, tb = _top(a, k), _top(b, k)
    if kind == "feature":
        return len(set(ta) & set(tb)) / k
    if kind == "sign":
        return sum(1 for f in set(ta) & set(tb) if np.sign(a[f]) == np.sign(b[f])) / k
    if kind == "rank":
        return sum(1 for r in range(k) if ta[r] == tb[r]) / k
    if kind == "signed_rank":
        return sum(1 for r in range(k) if ta[r] == tb[r]
                   and np.sign(a[ta[r]]) == np.sign(b[tb[r]])) / k
    if kind == "iou":
        return len(set(ta) & set(tb)) / len(set(ta) | set(tb))
    raise ValueError(kind)


METRIC_OF = {"feature": "topk", "sign": "topk_sign", "rank": "rank",
             "signed_rank": "signed_rank", "iou": "topk_iou"}


@pytest.fixture
def maps():
    """Maps built to share top features, partly in the same order, with some sign flips."""
    rng = np.random.default_rng(0)
    base = rng.permutation(64).astype(float) - 20  # distinct |values| except few: no ties
    base += rng.uniform(0, 0.01, 64)
    a = np.stack([base + rng.normal(0, s, 64) for s in (0.5, 3, 8, 20)])
    b = np.stack([base * rng.choice([1, -1], 64, p=[0.8, 0.2]) + rng.normal(0, s, 64)
                  for s in (0.5, 3, 8, 20)])
    return a.reshape(4, 8, 8), b.reshape(4, 8, 8)


@pytest.mark.parametrize("kind", list(METRIC_OF))
@pytest.mark.parametrize("k", [1, 5, 16])
def test_metric_equals_definition(maps, kind, k):
    a, b = maps
    got = similarity(a, b, METRIC_OF[kind], k=k, options={"normalization": "none"})
    ref = [_krishna(a[i].ravel(), b[i].ravel(), k, kind) for i in range(len(a))]
    np.testing.assert_allclose(got, ref, atol=1e-7)
    assert len(set(np.round(ref, 6))) > 1 or k == 1  # the cases differ: a real check


def test_fraction_rounds_up_to_whole_features(maps):
    a, b = maps
    got = similarity(a, b, "rank", fraction=0.1, options={"normalization": "none"})
    k = math.ceil(0.1 * 64)
    np.testing.assert_allclose(got, [_krishna(a[i].ravel(), b[i].ravel(), k, "rank")
                                     for i in range(4)], atol=1e-7)


def test_vectorised_matrix_equals_pairwise_definition(maps):
    a, b = maps
    stack = torch.tensor(np.stack([a, b, -a]), dtype=torch.float32)  # [M=3, N=4, 8, 8]
    result = similarity_matrices(stack, ["rank", "signed_rank"], names=["a", "b", "neg_a"],
                                 options={"normalization": "none"})
    for metric, kind in (("rank", "rank"), ("signed_rank", "signed_rank")):
        per_image = result[metric].per_image
        for i in range(3):
            for j in range(3):
                ref = [_krishna(stack[i, n].numpy().ravel(), stack[j, n].numpy().ravel(), 7,
                                kind) for n in range(4)]
                np.testing.assert_allclose(per_image[i, j], ref, atol=1e-6)
    # a map and its negation: same ranks, opposite signs
    assert np.allclose(result["rank"].per_image[0, 2], 1)
    assert np.allclose(result["signed_rank"].per_image[0, 2], 0)


def test_every_metric_declares_its_properties():
    for name in METRICS.names():
        props = METRICS.get(name).properties
        assert props is not None, name
        assert props.low < props.high and props.higher_is_similar
    assert not METRICS.get("rank").properties.sign_aware
    assert METRICS.get("signed_rank").properties.sign_aware


def test_public_rank_agreement_api(maps):
    import xaicompare as xc

    a, b = maps
    got = xc.rank_agreement(a, b, k=5, signed=True)
    np.testing.assert_allclose(got, [_krishna(a[i].ravel(), b[i].ravel(), 5, "signed_rank")
                                     for i in range(4)], atol=1e-7)
    assert xc.cka is not None and xc.consensus is not None and xc.ssim is not None


def test_topk_metrics_see_signed_maps_as_they_are_under_minmax(maps):
    """A study's min-max normalisation would make every sign positive and reorder |value|;
    the top-k metrics fix their own normalisation ('none'), the others keep the study's."""
    a, b = maps
    stack = torch.tensor(np.stack([a, b]), dtype=torch.float64)
    result = similarity_matrices(stack, ["topk_sign", "signed_rank", "cosine"],
                                 options={"normalization": "minmax"})
    for metric, kind in (("topk_sign", "sign"), ("signed_rank", "signed_rank")):
        ref = [_krishna(a[n].ravel(), b[n].ravel(), 7, kind) for n in range(4)]
        np.testing.assert_allclose(result[metric].per_image[0, 1], ref, atol=1e-12)
        assert result[metric].options["normalization"] == "none"
    def minmax(m):
        return (m - m.min()) / (m.max() - m.min())

    cos = [float(minmax(a[n]).ravel() @ minmax(b[n]).ravel() / np.linalg.norm(minmax(a[n]))
                 / np.linalg.norm(minmax(b[n]))) for n in range(4)]
    np.testing.assert_allclose(result["cosine"].per_image[0, 1], cos, rtol=1e-10)
    assert result["cosine"].options["normalization"] == "minmax"


def test_each_metric_is_excluded_by_the_degenerate_codes_of_what_it_sees():
    """A +-1 map is constant after 'abs' (degenerate for cosine) but fine as it is (top-k
    metrics): a metric's numbers must not depend on which metrics share the pass."""
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 5, 6, 6))
    maps[1, 2] = rng.choice([-1.0, 1.0], size=(6, 6))
    options = {"normalization": "abs"}
    together = similarity_matrices(maps, ["cosine", "topk_sign"], options=options)
    alone = similarity_matrices(maps, ["topk_sign"], options=options)
    np.testing.assert_array_equal(together["topk_sign"].per_image, alone["topk_sign"].per_image)
    assert np.isnan(together["cosine"].per_image[0, 1, 2])  # constant after abs
    assert np.isfinite(together["topk_sign"].per_image[0, 1, 2])
