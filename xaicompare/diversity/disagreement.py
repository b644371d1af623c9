"""Disagreement mining: the images on which models disagree most, in what they predict or
in what their explanations show."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import UserError
from ..validation import ArrayLike, as_numpy

PREDICTION_METHODS = ("modal", "entropy")


def prediction_disagreement(preds: ArrayLike, method: str = "modal") -> np.ndarray:
    """Per-image disagreement of M models' predicted classes: [M, N] ints -> [N].

    modal: 1 - (votes for the most common class) / M; 0 when all agree, at most 1 - 1/M.
    entropy: entropy (natural log) of the vote shares; 0 when all agree, at most ln(M).
    """
    if method not in PREDICTION_METHODS:
        raise UserError(f"method '{method}' is not one of {PREDICTION_METHODS}")
    p = as_numpy(preds, "preds", 2)
    if not np.issubdtype(p.dtype, np.integer):
        raise UserError(f"preds must be integer class indices [M, N], got dtype {p.dtype}")
    m, n = p.shape
    if m < 2:
        raise UserError(f"prediction disagreement needs at least 2 models, got {m}")
    # votes[c, n]: how many models predict class c on image n (classes relabelled densely)
    _, dense = np.unique(p, return_inverse=True)
    dense = dense.reshape(m, n)
    votes = np.zeros((dense.max() + 1, n))
    np.add.at(votes, (dense, np.broadcast_to(np.arange(n), (m, n))), 1.0)
    if method == "modal":
        return 1.0 - votes.max(axis=0) / m
    shares = votes / m
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(shares > 0, -shares * np.log(np.where(shares > 0, shares, 1.0)), 0.0)
    return terms.sum(axis=0)


def explanation_disagreement(per_image_sim: ArrayLike) -> np.ndarray:
    """Mean pairwise dissimilarity (1 - similarity) over model pairs i < j, per image.

    per_image_sim: [M, M, N]. For cosine similarity the result lies in [0, 2]. Pairs with
    a NaN similarity are skipped; an image with no defined pair gets NaN.
    """
    sim = as_numpy(per_image_sim, "per_image_sim", 3).astype(np.float64)
    m = sim.shape[0]
    if sim.shape[1] != m or m < 2:
        raise UserError(f"per_image_sim must be [M, M, N] with M >= 2, got {sim.shape}")
    ii, jj = np.triu_indices(m, k=1)
    dissim = 1.0 - sim[ii, jj]  # [P, N]
    valid = ~np.isnan(dissim)
    count = valid.sum(axis=0)
    total = np.where(valid, dissim, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def top_disagreements(scores: ArrayLike, ids: Sequence | None = None, n: int = 10) -> pd.DataFrame:
    """The n images with the highest disagreement score, highest first (NaN scores skipped;
    ties keep image order). Columns: rank (1 = most disagreement), id, score."""
    s = as_numpy(scores, "scores", 1).astype(np.float64)
    ids = list(range(len(s))) if ids is None else list(ids)
    if len(ids) != len(s):
        raise UserError(f"got {len(ids)} ids for {len(s)} scores")
    if int(n) != n or n < 1:
        raise UserError(f"n must be a positive integer, got {n}")
    finite = np.nonzero(~np.isnan(s))[0]
    order = finite[np.argsort(-s[finite], kind="stable")][: int(n)]
    return pd.DataFrame(
        {"rank": np.arange(1, len(order) + 1), "id": [ids[i] for i in order], "score": s[order]}
    )
