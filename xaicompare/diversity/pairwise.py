"""Prediction diversity between models on the same images: error consistency, 0/1 and
cross-entropy diversity, and the components of disagreement.

Inputs are aligned over images: correct[m, n] says whether model m got image n right,
probs_true[m, n] is the probability model m gives to image n's true class.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import UserError, unknown_name_error
from ..validation import ArrayLike, as_correct, as_numpy, check_names, labelled

# 1 - c_exp below this counts as zero: the kappa denominator vanishes.
DEGENERATE_TOL = 1e-12

DEGENERATE_REASON = (
    "error consistency is undefined when both models are right on every image or both are "
    "wrong on every image (expected agreement c_exp = 1, so kappa is 0/0); returned NaN"
)


def _kappa(c_obs: np.ndarray, c_exp: np.ndarray) -> np.ndarray:
    denom = 1.0 - c_exp
    degenerate = denom <= DEGENERATE_TOL
    if degenerate.any():
        warnings.warn(DEGENERATE_REASON, RuntimeWarning, stacklevel=3)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = (c_obs - c_exp) / denom
    return np.where(degenerate, np.nan, kappa)


def error_consistency(correct_a: ArrayLike, correct_b: ArrayLike) -> float:
    """Error consistency of two models (Geirhos et al., NeurIPS 2020).

    kappa = (c_obs - c_exp) / (1 - c_exp), where c_obs is the share of images on which
    both are right or both are wrong, and c_exp = p1 p2 + (1 - p1)(1 - p2) is that share
    expected from independent models with accuracies p1, p2. This is Cohen's kappa of the
    two correctness vectors. 1: the same images are hard for both; 0: no more overlap than
    chance; negative: complementary errors.

    Degenerate case: c_exp = 1 exactly when both accuracies are 1 or both are 0. kappa is
    then 0/0, so NaN is returned with a RuntimeWarning rather than a number.
    """
    a = as_correct(correct_a, "correct_a", 1)
    b = as_correct(correct_b, "correct_b", 1)
    if a.shape != b.shape or a.size == 0:
        raise UserError(
            f"correct_a and correct_b must be non-empty and aligned, got {a.shape} and {b.shape}"
        )
    c_obs = np.mean(a == b)
    p1, p2 = a.mean(), b.mean()
    return float(_kappa(np.asarray(c_obs), np.asarray(p1 * p2 + (1 - p1) * (1 - p2))))


def error_consistency_matrix(correct: np.ndarray) -> np.ndarray:
    """[M, N] 0/1 floats -> [M, M] error consistency (vectorised)."""
    n = correct.shape[1]
    wrong = 1.0 - correct
    c_obs = (correct @ correct.T + wrong @ wrong.T) / n
    p = correct.mean(axis=1)
    c_exp = np.outer(p, p) + np.outer(1 - p, 1 - p)
    return _kappa(c_obs, c_exp)


def zero_one_diversity(correct: ArrayLike) -> float:
    """0/1 diversity of a set of M >= 2 models (Ortega, Cabañas & Masegosa, AISTATS 2022).

    Mean over images of the variance over models (uniform weights, population variance)
    of the 0/1 loss 1[h_m(x) != y]. For two models it is a quarter of the share of images
    on which exactly one of them is right. 0 for identical correctness.
    """
    c = as_correct(correct, "correct", 2)
    _check_set(c, "correct")
    return float(c.var(axis=0).mean())


def zero_one_diversity_matrix(correct: np.ndarray) -> np.ndarray:
    """[M, N] -> [M, M] pairwise 0/1 diversity: mean((c_i - c_j)^2) / 4."""
    n = correct.shape[1]
    p = correct.mean(axis=1)
    both = correct @ correct.T / n
    return (p[:, None] + p[None, :] - 2.0 * both) / 4.0


def ce_diversity(probs_true: ArrayLike) -> float:
    """Cross-entropy diversity of a set of M >= 2 models (Ortega, Cabañas & Masegosa,
    "Diversity and Generalization in Neural Network Ensembles", AISTATS 2022,
    arXiv:2110.13786).

    D = E_x[ Var_m( p_m(y|x) / (sqrt(2) * max_m p_m(y|x)) ) ]
      = E_x[ Var_m(p_m(y|x)) / (2 * max_m p_m(y|x)^2) ],

    with uniform weights over models (population variance). This is the diversity term of
    their cross-entropy bound for model averaging, which rests on Masegosa's (NeurIPS 2020)
    second-order Jensen inequality
    ln E_m[p_m] >= E_m[ln p_m] + Var_m(p_m) / (2 max_m p_m^2),
    so the ensemble's NLL is at most the members' mean NLL minus D.
    Source note: the paper was located with the search tool (ar5iv 2110.13786), which
    returned its abstract only; the formula is the one stated in the brief and matches
    the paper's bound as recalled above.
    An image where every model gives the true class probability exactly 0 contributes 0
    (all models agree; the ratio would be 0/0).
    """
    p = as_numpy(probs_true, "probs_true", 2).astype(np.float64)
    _check_set(p, "probs_true")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise UserError("probs_true must be probabilities in [0, 1]")
    return float(_ce_terms(p, axis=0).mean())


def _ce_terms(p: np.ndarray, axis: int) -> np.ndarray:
    top = p.max(axis=axis)
    var = p.var(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = var / (2.0 * top**2)
    return np.where(top > 0, terms, 0.0)


def ce_diversity_matrix(probs_true: np.ndarray) -> np.ndarray:
    """[M, N] -> [M, M] pairwise CE diversity: mean((p_i - p_j)^2 / (8 max(p_i, p_j)^2))."""
    m = probs_true.shape[0]
    out = np.zeros((m, m))
    for i in range(m):  # one row at a time keeps memory at M x N
        pair = np.stack(np.broadcast_arrays(probs_true[i][None, :], probs_true))  # [2, M, N]
        out[i] = _ce_terms(pair, axis=0).mean(axis=1)
    return out


def diversity_components(correct: ArrayLike, names: Sequence[str] | None = None):
    """[M, M] share of images where the row model is right and the column model is wrong.

    Entry (i, j) + entry (j, i) is the share of images on which exactly one of the two is
    right (so pairwise 0/1 diversity = that sum / 4). Diagonal is 0.
    """
    c = as_correct(correct, "correct", 2)
    _check_set(c, "correct", min_models=1)
    names = check_names(names, c.shape[0])
    return labelled(_components(c), names)


def _components(correct: np.ndarray) -> np.ndarray:
    return correct @ (1.0 - correct).T / correct.shape[1]


def _check_set(x: np.ndarray, name: str, min_models: int = 2) -> None:
    if x.shape[0] < min_models or x.shape[1] == 0:
        raise UserError(
            f"{name} must be [M, N] with M >= {min_models} models and N >= 1 images, "
            f"got shape {x.shape}"
        )


# name -> (input kind, vectorised [M, N] -> [M, M])
PAIRWISE_METRICS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "error_consistency": ("correct", error_consistency_matrix),
    "zero_one_diversity": ("correct", zero_one_diversity_matrix),
    "ce_diversity": ("probs", ce_diversity_matrix),
    "components": ("correct", _components),
}


def pairwise_matrix(
    values: ArrayLike,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "error_consistency",
    names: Sequence[str] | None = None,
) -> np.ndarray | pd.DataFrame:
    """M x M matrix of a pairwise metric over models.

    values: [M, N] correctness (bool) for "error_consistency", "zero_one_diversity",
    "components", or true-class probabilities for "ce_diversity"; or any callable
    f(values[i], values[j]) -> float (evaluated on every ordered pair, diagonal included).
    Returns a numpy array, or a DataFrame indexed and columned by `names` when given.
    error_consistency: the diagonal is 1, except for a model right (or wrong) on every
    image, whose entries with equally degenerate models are NaN (with a RuntimeWarning).
    """
    x = as_numpy(values, "values", 2)
    names = check_names(names, x.shape[0])
    if callable(metric):
        m = x.shape[0]
        out = np.array([[metric(x[i], x[j]) for j in range(m)] for i in range(m)], float)
        return labelled(out, names)
    if metric not in PAIRWISE_METRICS:
        raise unknown_name_error("pairwise metric", metric, PAIRWISE_METRICS)
    kind, fn = PAIRWISE_METRICS[metric]
    if kind == "correct":
        x = as_correct(x, "values", 2)
    else:
        x = x.astype(np.float64)
        if x.size and (x.min() < 0 or x.max() > 1):
            raise UserError("values for ce_diversity must be probabilities in [0, 1]")
    _check_set(x, "values", min_models=1)
    return labelled(fn(x), names)
