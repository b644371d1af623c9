"""CKA against a direct implementation of the HSIC formulas (Gram matrices in float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xaicompare.compare import representation
from xaicompare.compare.representation import cka, cka_matrix
from xaicompare.errors import UserError


def _hsic_biased(k: np.ndarray, l_: np.ndarray) -> float:
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l_ @ h)) / (n - 1) ** 2


def _hsic_unbiased(k: np.ndarray, l_: np.ndarray) -> float:
    """Song et al. (2012), eq. 5, written from the paper."""
    n = len(k)
    kt, lt = k.copy(), l_.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    return float(np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
                 - 2 / (n - 2) * (one @ kt @ lt @ one)) / (n * (n - 3))


def _reference(x: np.ndarray, y: np.ndarray, hsic, kernel="linear", sx=None, sy=None) -> float:
    def gram(f, s):
        if kernel == "linear":
            return f @ f.T
        d2 = ((f[:, None] - f[None]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * s**2))

    k, l_ = gram(x, sx), gram(y, sy)
    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 6))
    a = base @ rng.normal(size=(6, 12)) + 3.0  # an offset: HSIC must not depend on it
    b = np.tanh(base @ rng.normal(size=(6, 9))) + 0.3 * rng.normal(size=(40, 9))
    c = rng.normal(size=(40, 20))
    return [a, b, c]


@pytest.mark.parametrize("debiased", [True, False])
def test_linear_cka_equals_hsic_formula(feats, debiased):
    hsic = _hsic_unbiased if debiased else _hsic_biased
    result = cka_matrix(feats, ["a", "b", "c"], debiased=debiased)
    for i in range(3):
        for j in range(3):
            ref = _reference(feats[i], feats[j], hsic)
            assert result.estimate.iloc[i, j] == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_rbf_cka_equals_hsic_formula_with_recorded_width(feats):
    result = cka_matrix(feats, ["a", "b", "c"], kernel="rbf", debiased=True, sigma_frac=0.8)
    sigma = result.params["sigma"]
    for name, f in zip("abc", feats, strict=True):  # width = 0.8 x lower median distance
        d = np.sqrt(((f[:, None] - f[None]) ** 2).sum(-1))[np.triu_indices(len(f), 1)]
        assert sigma[name] == pytest.approx(0.8 * np.sort(d)[(len(d) - 1) // 2], rel=1e-9)
    ref = _reference(feats[0], feats[1], _hsic_unbiased, "rbf", sigma["a"], sigma["b"])
    assert result.estimate.loc["a", "b"] == pytest.approx(ref, rel=1e-9)


def test_invariances_and_self_similarity(feats):
    a = feats[0]
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(12, 12)))
    assert cka(a, a) == pytest.approx(1.0, abs=1e-12)
    assert cka(a, a @ q) == pytest.approx(1.0, abs=1e-10)  # orthogonal transform
    assert cka(a, 7.5 * a) == pytest.approx(1.0, abs=1e-10)  # isotropic scaling
    assert cka(a, feats[1]) == pytest.approx(cka(a @ q * 0.1, feats[1]), rel=1e-9)
    # not invariant to an arbitrary invertible linear map (what separates CKA from CCA)
    w = np.diag(np.linspace(0.1, 10, 12))
    assert abs(cka(a, a @ w) - 1.0) > 1e-3


def test_blocked_gram_rows_equal_one_block(feats, monkeypatch):
    whole = cka_matrix(feats, debiased=True).estimate.to_numpy()
    monkeypatch.setattr(representation, "ROW_BLOCK_ELEMENTS", 40 * 3)  # blocks of 3 rows
    blocked = cka_matrix(feats, debiased=True).estimate.to_numpy()
    np.testing.assert_allclose(blocked, whole, rtol=1e-12)


def test_debiased_removes_the_bias_of_many_features():
    rng = np.random.default_rng(3)  # independent representations, features >> images
    x, y = rng.normal(size=(30, 500)), rng.normal(size=(30, 500))
    assert cka(x, y, debiased=False) > 0.5  # the known upward bias of biased CKA
    assert abs(cka(x, y, debiased=True)) < 0.1


def test_bootstrap_interval_brackets_estimate(feats):
    result = cka_matrix(feats, ["a", "b", "c"], n_resamples=200, seed=0)
    est, low, high = (f.loc["a", "b"] for f in (result.estimate, result.low, result.high))
    assert low < est < high
    again = cka_matrix(feats, ["a", "b", "c"], n_resamples=200, seed=0)
    assert again.low.equals(result.low)  # reproducible from the seed


def test_float32_torch_input_and_bad_input(feats):
    x = torch.tensor(np.stack([feats[0], feats[0] @ np.eye(12)[::-1]]), dtype=torch.float32)
    assert cka_matrix(x).estimate.iloc[0, 1] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(UserError, match="same N"):
        cka_matrix([feats[0], feats[1][:10]])
    with pytest.raises(UserError, match="NaN"):
        cka_matrix([feats[0], np.full((40, 3), np.nan)])
    with pytest.raises(UserError, match="CKA kernel"):
        cka_matrix(feats, kernel="cosine")


def test_features_straight_from_a_forward_pass_are_accepted():
    """Features that still require grad (no torch.no_grad()) give the same CKA."""
    import torch

    from xaicompare.compare import cka_matrix

    x = torch.randn(12, 5, requires_grad=True)
    y = x @ torch.randn(5, 4)  # requires grad too
    with_grad = cka_matrix({"x": x, "y": y}).estimate
    without = cka_matrix({"x": x.detach(), "y": y.detach()}).estimate
    assert with_grad.equals(without)
