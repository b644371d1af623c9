"""Ensembles by averaging softmax outputs, set beside the members' diversity.

One row per subset of models, so a user can see whether diversity predicts the gain of
the ensemble over its best member.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from math import comb

import numpy as np
import pandas as pd

from ..errors import UserError
from ..validation import ArrayLike, as_labels, as_numpy, check_names, check_probs
from .calibration import PROB_FLOOR
from .pairwise import _ce_terms, error_consistency_matrix

MAX_SUBSETS = 200_000


def ensemble_probs(probs: ArrayLike) -> np.ndarray:
    """[M, N, K] member probabilities -> [N, K] ensemble (uniform average)."""
    p = as_numpy(probs, "probs", 3).astype(np.float64)
    check_probs(p)
    return p.mean(axis=0)


def ensemble_table(
    probs: ArrayLike,
    labels: ArrayLike,
    names: Sequence[str],
    k: int | Sequence[int] = 2,
) -> pd.DataFrame:
    """Every k-subset of models as an ensemble that averages softmax outputs.

    probs: [M, N, K] softmax outputs of M models on N aligned images; labels: [N];
    k: subset size, or several sizes (e.g. (2, 3)).
    Columns: members (tuple of names), size, accuracy, nll (ensemble), best_member_accuracy,
    best_member_nll (each the best single member on that measure), accuracy_gain
    (ensemble - best member; > 0 is better), nll_gain (best member - ensemble; > 0 is
    better), zero_one_diversity and ce_diversity of the members (Ortega et al. 2022), and
    error_consistency (mean over member pairs; NaN if any pair is degenerate).
    NLL clips probabilities at 1e-12 before the log.
    """
    p = as_numpy(probs, "probs", 3).astype(np.float64)
    m, n, n_classes = p.shape
    check_probs(p)
    names = check_names(names, m)
    y = as_labels(labels, n, n_classes)
    sizes = [k] if np.isscalar(k) else list(k)
    for size in sizes:
        if int(size) != size or not 2 <= size <= m:
            raise UserError(f"ensemble size k must be an integer in [2, {m}], got {size}")
    n_subsets = sum(comb(m, int(s)) for s in sizes)
    if n_subsets > MAX_SUBSETS:
        raise UserError(f"k={sizes} gives {n_subsets} subsets; at most {MAX_SUBSETS} accepted")

    rows = np.arange(n)
    probs_true = p[:, rows, y]  # [M, N]
    correct = (p.argmax(axis=2) == y[None, :]).astype(np.float64)
    member_acc = correct.mean(axis=1)
    member_nll = -np.log(np.clip(probs_true, PROB_FLOOR, 1.0)).mean(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a degenerate pair shows up as NaN
        kappa = error_consistency_matrix(correct)

    records = []
    for size in sizes:
        for subset in itertools.combinations(range(m), int(size)):
            idx = list(subset)
            ens = p[idx].mean(axis=0)
            acc = float((ens.argmax(axis=1) == y).mean())
            nll = float(-np.log(np.clip(ens[rows, y], PROB_FLOOR, 1.0)).mean())
            best_acc = float(member_acc[idx].max())
            best_nll = float(member_nll[idx].min())
            pairs = list(itertools.combinations(idx, 2))
            records.append(
                {
                    "members": tuple(names[i] for i in idx),
                    "size": int(size),
                    "accuracy": acc,
                    "nll": nll,
                    "best_member_accuracy": best_acc,
                    "best_member_nll": best_nll,
                    "accuracy_gain": acc - best_acc,
                    "nll_gain": best_nll - nll,
                    "zero_one_diversity": float(correct[idx].var(axis=0).mean()),
                    "ce_diversity": float(_ce_terms(probs_true[idx], axis=0).mean()),
                    "error_consistency": float(np.mean([kappa[i, j] for i, j in pairs])),
                }
            )
    return pd.DataFrame.from_records(records)
