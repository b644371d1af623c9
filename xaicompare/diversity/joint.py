"""Explanation similarity beside prediction diversity: Mantel test between two model x model
matrices, and explanation similarity split by whether the models were right."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..errors import UserError
from ..validation import ArrayLike, as_correct, as_numpy, check_names

METHODS = ("pearson", "spearman")
ALTERNATIVES = ("greater", "less", "two-sided")


def _align(a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    for name, m in (("A", a), ("B", b)):
        if not isinstance(m, pd.DataFrame) or list(m.index) != list(m.columns):
            raise UserError(
                f"{name} must be a square DataFrame with the same row and column labels"
            )
    if set(a.index) != set(b.index) or len(a.index) != len(b.index):
        raise UserError(
            f"A and B must cover the same models; only in A: {sorted(set(a.index) - set(b.index))}, "
            f"only in B: {sorted(set(b.index) - set(a.index))}"
        )
    labels = list(a.index)
    return a.to_numpy(float), b.loc[labels, labels].to_numpy(float), labels


def _entry_indices(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper triangle when both matrices are symmetric, else every off-diagonal entry."""
    m = a.shape[0]
    if np.allclose(a, a.T, equal_nan=True) and np.allclose(b, b.T, equal_nan=True):
        return np.triu_indices(m, k=1)
    rows, cols = np.nonzero(~np.eye(m, dtype=bool))
    return rows, cols


def _rank_matrix(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """x with its used entries replaced by their ranks (and mirrored if symmetric)."""
    out = np.zeros_like(x)
    out[rows, cols] = rankdata(x[rows, cols])
    if len(rows) * 2 == x.shape[0] * (x.shape[0] - 1):  # upper triangle only: mirror
        out[cols, rows] = out[rows, cols]
    return out


def _corr_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of y with each row of x ([P, n], [n] -> [P])."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    denom = np.sqrt((xc**2).sum(axis=1) * (yc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc @ yc) / denom


def mantel_test(
    A: pd.DataFrame,
    B: pd.DataFrame,
    n_permutations: int = 999,
    seed: int = 0,
    method: str = "pearson",
    alternative: str = "greater",
) -> dict[str, float | int | bool]:
    """Mantel test: correlation between two model x model matrices, with a permutation p.

    The statistic is the Pearson (or Spearman) correlation of the off-diagonal entries
    (the diagonal is excluded; the upper triangle when both are symmetric). Its null
    distribution comes from relabelling the models of B: rows and columns are permuted
    jointly. p = (1 + #{r_perm >= r}) / (1 + n_permutations) for alternative="greater";
    when M! <= n_permutations every permutation is enumerated instead and p is exact
    (#{r_perm >= r} / M!, the identity included).
    Returns {r, p_value, n (entries correlated), n_permutations (used), exact}.
    """
    if method not in METHODS:
        raise UserError(f"method '{method}' is not one of {METHODS}")
    if alternative not in ALTERNATIVES:
        raise UserError(f"alternative '{alternative}' is not one of {ALTERNATIVES}")
    if int(n_permutations) != n_permutations or n_permutations < 1:
        raise UserError(f"n_permutations must be a positive integer, got {n_permutations}")
    a, b, labels = _align(A, B)
    m = a.shape[0]
    if m < 3:
        raise UserError(f"the Mantel test needs at least 3 models, got {m}")
    if np.isnan(a).any() or np.isnan(b).any():
        bad = [labels[i] for i in np.unique(np.nonzero(np.isnan(a) | np.isnan(b))[0])]
        raise UserError(f"A or B has NaN entries (rows {bad}); drop or fill those models first")
    rows, cols = _entry_indices(a, b)
    if method == "spearman":
        a, b = _rank_matrix(a, rows, cols), _rank_matrix(b, rows, cols)
    a_vec = a[rows, cols]
    r = float(_corr_rows(b[rows, cols][None, :], a_vec)[0])
    if np.isnan(r):
        raise UserError("A or B is constant off the diagonal: the correlation is undefined")

    exact = math.factorial(m) <= n_permutations
    if exact:
        perms = np.array(list(itertools.permutations(range(m))))
    else:
        rng = np.random.default_rng(seed)
        perms = np.argsort(rng.random((int(n_permutations), m)), axis=1)
    null = _corr_rows(b[perms[:, rows], perms[:, cols]], a_vec)
    tol = 1e-12  # a permutation that reproduces r exactly must count as ">= r"
    if alternative == "greater":
        hits = np.sum(null >= r - tol)
    elif alternative == "less":
        hits = np.sum(null <= r + tol)
    else:
        hits = np.sum(np.abs(null) >= abs(r) - tol)
    p = hits / len(perms) if exact else (1 + hits) / (1 + len(perms))
    return {
        "r": r,
        "p_value": float(p),
        "n": int(len(rows)),
        "n_permutations": int(len(perms)),
        "exact": bool(exact),
    }


OUTCOMES = ("both_correct", "one_wrong", "both_wrong")


def similarity_by_outcome(
    per_image_sim: ArrayLike,
    correct: ArrayLike,
    names: Sequence[str] | None = None,
    by_pair: bool = True,
) -> pd.DataFrame:
    """Explanation similarity of each model pair, split by the pair's prediction outcome.

    per_image_sim: [M, M, N] similarity of models i and j on image n; correct: [M, N].
    by_pair=True: one row per pair (i < j) and outcome; False: pooled over all pairs
    (each (pair, image) counted once). Columns: model_a, model_b (by_pair only), outcome
    ("both_correct", "one_wrong", "both_wrong"), mean, std, n. NaN similarities are skipped;
    an empty group has n = 0 and NaN mean/std.
    """
    sim = as_numpy(per_image_sim, "per_image_sim", 3).astype(np.float64)
    c = as_correct(correct, "correct", 2).astype(bool)
    m, _, n = sim.shape
    if sim.shape[1] != m or c.shape != (m, n):
        raise UserError(
            f"per_image_sim must be [M, M, N] and correct [M, N]; got {sim.shape}, {c.shape}"
        )
    names = check_names(names, m) or [str(i) for i in range(m)]
    ii, jj = np.triu_indices(m, k=1)
    values = sim[ii, jj]  # [P, N]
    n_right = c[ii].astype(int) + c[jj].astype(int)  # 2 both correct, 1 one wrong, 0 both wrong
    outcome_of = {"both_correct": 2, "one_wrong": 1, "both_wrong": 0}

    def summary(v: np.ndarray) -> dict[str, float | int]:
        v = v[~np.isnan(v)]
        if v.size == 0:
            return {"mean": np.nan, "std": np.nan, "n": 0}
        return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}

    records = []
    if by_pair:
        for p, (i, j) in enumerate(zip(ii, jj, strict=True)):
            for outcome in OUTCOMES:
                mask = n_right[p] == outcome_of[outcome]
                records.append(
                    {
                        "model_a": names[i],
                        "model_b": names[j],
                        "outcome": outcome,
                        **summary(values[p][mask]),
                    }
                )
    else:
        for outcome in OUTCOMES:
            records.append({"outcome": outcome, **summary(values[n_right == outcome_of[outcome]])})
    return pd.DataFrame.from_records(records)
