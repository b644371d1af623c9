"""Bootstrap confidence intervals over images, computed as reweightings of per-image values.

Explanations and predictions are never recomputed: each resample is a row of multinomial
counts, and every matrix entry of every resample comes from a few matrix products.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..diversity.calibration import PROB_FLOOR
from ..diversity.ensembles import MAX_SUBSETS
from ..diversity.pairwise import DEGENERATE_TOL
from ..errors import UserError, unknown_name_error
from ..validation import as_correct, as_labels, as_numpy, check_names, check_probs
from ._inputs import model_names, per_image_matrix
from .resample import (
    INTERVALS,
    STATISTICS,
    bca_interval,
    check_resampling,
    jackknife_weights,
    percentile_interval,
    resample_counts,
    weighted_statistic,
)

PAIRWISE = ("error_consistency", "zero_one_diversity", "ce_diversity")


@dataclass
class BootstrapResult:
    """Point estimate, interval and standard error of every matrix entry.

    estimate/low/high/se: DataFrames (rows x cols); replicates: float64 [R, rows, cols]
    (NaN where a resample left a pair without a usable image); se is the std (ddof=1) of
    the replicates. Everything is reproducible from (seed, n_resamples).
    """

    statistic: str
    estimate: pd.DataFrame
    low: pd.DataFrame
    high: pd.DataFrame
    se: pd.DataFrame
    replicates: np.ndarray
    n_resamples: int
    seed: int
    ci: float
    interval: str
    extra: dict = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """Long table, one row per (model_a, model_b): estimate, low, high, se."""
        parts = {k: getattr(self, k).stack()
                 for k in ("estimate", "low", "high", "se")}
        out = pd.DataFrame(parts)
        out.index.names = ["model_a", "model_b"]
        return out.reset_index()

    def provenance(self) -> dict:
        return {"statistic": self.statistic, "n_resamples": self.n_resamples,
                "seed": self.seed, "ci": self.ci, "interval": self.interval, **self.extra}


def _check_interval(interval: str) -> None:
    if interval not in INTERVALS:
        raise UserError(f"interval={interval!r} is not accepted; accepted: {', '.join(INTERVALS)}")


def _result(statistic, estimate, replicates, jackknife, rows, cols, n_resamples, seed, ci,
            interval, extra=None) -> BootstrapResult:
    """Intervals from replicates [R, M, K]; jackknife [N, M, K] is needed for BCa only."""
    if interval == "bca":
        low, high = bca_interval(replicates, estimate, jackknife, ci)
    else:
        low, high = percentile_interval(replicates, ci)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pairs with < 2 valid replicates
        se = np.nanstd(replicates, axis=0, ddof=1)

    def frame(values):
        return pd.DataFrame(values, index=rows, columns=cols)

    return BootstrapResult(statistic, frame(estimate), frame(low), frame(high), frame(se),
                           replicates, int(n_resamples), int(seed), float(ci), interval,
                           extra or {})


def bootstrap_matrix(
    per_image,
    statistic: str = "mean",
    n_resamples: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    names=None,
    interval: str = "percentile",
    ddof: int = 0,
) -> BootstrapResult:
    """Bootstrap over images of a models x models summary of per-image similarities.

    per_image: [M, K, N] per-image values (NaN = excluded pair-image, ignored in every
        resample as compare.aggregate ignores it), or a compare.SimilarityResult.
    statistic: "mean" | "dissimilarity" (sqrt((1 - mean)^2 + std^2), std with `ddof`) |
        "median" | "std".
    interval: "percentile" or "bca" (bias-corrected and accelerated; adds a jackknife over
        the N images, still a reweighting).
    The resamples are `resample_indices(N, n_resamples, seed)`: the same images are drawn
    for every pair, so differences between entries keep their correlation.
    """
    if statistic not in STATISTICS:
        raise unknown_name_error("bootstrap statistic", statistic, STATISTICS)
    check_resampling(n_resamples, seed, ci)
    _check_interval(interval)
    values, rows, cols = per_image_matrix(per_image, names)
    m, k, n = values.shape
    series = values.reshape(m * k, n)
    estimate = weighted_statistic(series, np.ones((1, n)), statistic, ddof)[0].reshape(m, k)
    counts = resample_counts(n, n_resamples, seed)
    replicates = weighted_statistic(series, counts, statistic, ddof).reshape(-1, m, k)
    jackknife = None
    if interval == "bca":
        jack = weighted_statistic(series, jackknife_weights(n), statistic, ddof)  # [N, P]
        jack[np.isnan(series.T)] = np.nan  # dropping an excluded image is not a sample
        jackknife = jack.reshape(n, m, k)
    return _result(statistic, estimate, replicates, jackknife, rows, cols, n_resamples, seed,
                   ci, interval, {"ddof": ddof, "n_images": n})


# --- prediction-level matrices ----------------------------------------------------------------


def _pairwise_from_weights(x: np.ndarray, weights: np.ndarray, metric: str) -> np.ndarray:
    """Pairwise metric [R, M, M] of the weighted image sets; x: [M, N] correct or probs."""
    total = weights.sum(axis=1)[:, None, None]  # [R, 1, 1]
    if metric == "ce_diversity":
        top = np.maximum(x[:, None, :], x[None, :, :])
        with np.errstate(invalid="ignore", divide="ignore"):
            terms = (x[:, None, :] - x[None, :, :]) ** 2 / (8.0 * top**2)
        terms = np.where(top > 0, terms, 0.0)  # all-zero probabilities agree: 0
        m = x.shape[0]
        return (weights @ terms.reshape(m * m, -1).T).reshape(-1, m, m) / total
    p = (weights @ x.T) / total[:, :, 0]  # [R, M] accuracies
    both = np.stack([(weights * row) @ x.T for row in x], axis=1) / total  # [R, M, M]
    pi, pj = p[:, :, None], p[:, None, :]
    if metric == "zero_one_diversity":
        return (pi + pj - 2.0 * both) / 4.0
    c_obs = 1.0 - pi - pj + 2.0 * both
    c_exp = pi * pj + (1 - pi) * (1 - pj)
    denom = 1.0 - c_exp
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = (c_obs - c_exp) / denom
    return np.where(denom <= DEGENERATE_TOL, np.nan, kappa)


def bootstrap_pairwise(
    values,
    metric: str = "error_consistency",
    n_resamples: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    names=None,
    interval: str = "percentile",
) -> BootstrapResult:
    """Bootstrap over images of a prediction-diversity matrix.

    values: [M, N] correctness (bool or 0/1) for "error_consistency" and
        "zero_one_diversity", true-class probabilities for "ce_diversity" (the inputs of
        diversity.pairwise_matrix). Error consistency is NaN in resamples where both models
        are right (or wrong) on every drawn image; those replicates are ignored.
    """
    if metric not in PAIRWISE:
        raise unknown_name_error("bootstrapped pairwise metric", metric, PAIRWISE)
    check_resampling(n_resamples, seed, ci)
    _check_interval(interval)
    if metric == "ce_diversity":
        x = as_numpy(values, "values", 2).astype(np.float64)
        if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 1 or np.isnan(x).any()):
            raise UserError("values for ce_diversity must be probabilities in [0, 1]")
    else:
        x = as_correct(values, "values", 2)
    m, n = x.shape
    if n == 0:
        raise UserError("values has no images (N = 0)")
    names = model_names(check_names(names, m), m)
    estimate = _pairwise_from_weights(x, np.ones((1, n)), metric)[0]
    replicates = _pairwise_from_weights(x, resample_counts(n, n_resamples, seed), metric)
    jackknife = _pairwise_from_weights(x, jackknife_weights(n), metric) if interval == "bca" else None
    return _result(metric, estimate, replicates, jackknife, names, names, n_resamples, seed, ci,
                   interval, {"n_images": n})


# --- ensembles ---------------------------------------------------------------------------


def bootstrap_ensemble_gain(
    probs,
    labels,
    names,
    k: int | tuple[int, ...] = 2,
    n_resamples: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Bootstrap over images of each ensemble's gain over its best member.

    probs: [M, N, K] softmax outputs; labels: [N]; names: M model names; k: subset size(s).
    Per subset (as diversity.ensemble_table): accuracy_gain = ensemble accuracy - best
    member accuracy; nll_gain = best member NLL - ensemble NLL (> 0 is better). The best
    member is picked again in every resample, as on the full set.
    Columns: members, size, then for each gain: <gain>, <gain>_low, <gain>_high,
    <gain>_se, <gain>_p_positive (share of resamples with gain > 0).
    """
    check_resampling(n_resamples, seed, ci)
    p = as_numpy(probs, "probs", 3).astype(np.float64)
    m, n, n_classes = p.shape
    check_probs(p)
    names = check_names(names, m)
    if names is None:
        raise UserError("names are required: one per model")
    y = as_labels(labels, n, n_classes)
    sizes = [k] if np.isscalar(k) else list(k)
    for size in sizes:
        if int(size) != size or not 2 <= size <= m:
            raise UserError(f"ensemble size k must be an integer in [2, {m}], got {size}")
    subsets = [s for size in sizes for s in itertools.combinations(range(m), int(size))]
    if len(subsets) > MAX_SUBSETS:
        raise UserError(f"k={sizes} gives {len(subsets)} subsets; at most {MAX_SUBSETS} accepted")

    rows = np.arange(n)
    member_correct = (p.argmax(axis=2) == y).astype(np.float64)  # [M, N]
    member_nll = -np.log(np.clip(p[:, rows, y], PROB_FLOOR, 1.0))  # [M, N]
    ens_correct = np.empty((len(subsets), n))
    ens_nll = np.empty((len(subsets), n))
    for s, idx in enumerate(subsets):
        ens = p[list(idx)].mean(axis=0)
        ens_correct[s] = ens.argmax(axis=1) == y
        ens_nll[s] = -np.log(np.clip(ens[rows, y], PROB_FLOOR, 1.0))

    weights = np.vstack([np.ones((1, n)), resample_counts(n, n_resamples, seed)])
    weights /= weights.sum(axis=1, keepdims=True)  # row 0: the full set
    member_acc, member_loss = weights @ member_correct.T, weights @ member_nll.T  # [1+R, M]
    ens_acc, ens_loss = weights @ ens_correct.T, weights @ ens_nll.T  # [1+R, S]
    acc_gain = np.stack([ens_acc[:, s] - member_acc[:, list(idx)].max(1)
                         for s, idx in enumerate(subsets)], axis=1)
    nll_gain = np.stack([member_loss[:, list(idx)].min(1) - ens_loss[:, s]
                         for s, idx in enumerate(subsets)], axis=1)

    table = pd.DataFrame({"members": [tuple(names[i] for i in idx) for idx in subsets],
                          "size": [len(idx) for idx in subsets]})
    for gain, values in (("accuracy_gain", acc_gain), ("nll_gain", nll_gain)):
        low, high = percentile_interval(values[1:], ci)
        table[gain] = values[0]
        table[f"{gain}_low"] = low
        table[f"{gain}_high"] = high
        table[f"{gain}_se"] = values[1:].std(axis=0, ddof=1) if n_resamples > 1 else np.nan
        table[f"{gain}_p_positive"] = (values[1:] > 0).mean(axis=0)
    table.attrs.update({"n_resamples": n_resamples, "seed": seed, "ci": ci,
                        "interval": "percentile"})
    return table
