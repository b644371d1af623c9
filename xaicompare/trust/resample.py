"""Resampling as reweighting: bootstrap counts, weighted statistics and intervals.

Every resample of N images is a row of integer weights (how often each image was drawn),
so a statistic over R resamples of P per-image series is one matrix product [R, N] x [N, P]
(mean, std) or one sorted cumulative sum (median), never R recomputations.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from ..errors import UserError

STATISTICS = ("mean", "dissimilarity", "median", "std")
INTERVALS = ("percentile", "bca")


def check_resampling(n_resamples, seed, ci) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or (
        n_resamples < 1
    ):
        raise UserError(f"n_resamples={n_resamples!r} is not accepted; accepted: an int >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise UserError(f"seed={seed!r} is not accepted; accepted: an int")
    if not isinstance(ci, int | float) or not 0 < ci < 1:
        raise UserError(f"ci={ci!r} is not accepted; accepted: a number in (0, 1), e.g. 0.95")


def resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """Bootstrap draws [R, N] (image indices with replacement), reproducible from `seed`."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def counts_from_indices(indices: np.ndarray, n: int) -> np.ndarray:
    """[R, N] draws -> [R, N] float64 multinomial counts (how often each image was drawn)."""
    r = indices.shape[0]
    flat = (indices + n * np.arange(r)[:, None]).ravel()
    return np.bincount(flat, minlength=r * n).reshape(r, n).astype(np.float64)


def resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """Counts [R, N] of `resample_indices(n, n_resamples, seed)`."""
    return counts_from_indices(resample_indices(n, n_resamples, seed), n)


def weighted_moments(values: np.ndarray, weights: np.ndarray, ddof: int = 0):
    """NaN-aware weighted mean and std of series values [P, N] under weights [R, N].

    Integer weights are image multiplicities, so the result equals the plain mean/std of
    the resampled series (std with `ddof`, like compare.aggregate). -> (mean, std) [R, P].
    """
    valid = ~np.isnan(values)
    n_all = valid.sum(1)
    centre = np.where(valid, values, 0.0).sum(1) / np.maximum(n_all, 1)  # full-sample mean
    # centre each series first (by a per-series constant) to avoid cancellation in E[x^2]-E[x]^2
    x = np.where(valid, values - centre[:, None], 0.0)
    n = weights @ valid.T.astype(np.float64)  # [R, P] images in each resample
    s1 = weights @ x.T
    s2 = weights @ (x * x).T
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_c = s1 / n
        var = np.maximum(s2 - n * mean_c**2, 0.0) / (n - ddof)
    mean = np.where(n > 0, mean_c + centre, np.nan)
    std = np.where(n > ddof, np.sqrt(var), np.nan)
    return mean, std


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """NaN-aware median [R, P] of series values [P, N] with integer weights [R, N].

    The median of the multiset where image n appears weights[r, n] times (the mean of the
    two middle elements for an even count, as numpy): per series, cumulative counts in
    sorted order, and one batched binary search for the two middle ranks.
    """
    r, n = weights.shape
    counts = np.rint(weights).astype(np.int64)
    out = np.full((r, values.shape[0]), np.nan)
    row_offset = np.arange(r) * (n + 1)  # rows of cum live in disjoint ranges when flattened
    for p, series in enumerate(values):
        valid = np.nonzero(~np.isnan(series))[0]
        if valid.size == 0:
            continue
        order = valid[np.argsort(series[valid], kind="stable")]
        sorted_values = series[order]
        cum = np.cumsum(counts[:, order], axis=1)  # [R, n_valid], each row <= n
        total = cum[:, -1]
        flat = (cum + row_offset[:, None]).ravel()
        start = np.arange(r) * order.size
        middle = []
        for rank in (np.floor((total + 1) / 2), np.floor(total / 2) + 1):  # 1-based ranks
            pos = np.searchsorted(flat, rank + row_offset, side="left") - start
            middle.append(sorted_values[np.minimum(pos, order.size - 1)])
        out[:, p] = np.where(total > 0, 0.5 * (middle[0] + middle[1]), np.nan)
    return out


def weighted_statistic(values: np.ndarray, weights: np.ndarray, statistic: str, ddof: int = 0):
    """statistic of series [P, N] under each weight row [R, N] -> [R, P].

    dissimilarity = sqrt((1 - mean)^2 + std^2), as compare.dissimilarity.
    """
    if statistic == "median":
        # symmetric matrices repeat every series twice: compute each distinct one once
        keys = np.ascontiguousarray(values).view(np.dtype((np.void, values.shape[1] * 8)))
        _, first, inverse = np.unique(keys.ravel(), return_index=True, return_inverse=True)
        return weighted_median(values[first], weights)[:, inverse.reshape(-1)]
    mean, std = weighted_moments(values, weights, ddof)
    if statistic == "mean":
        return mean
    if statistic == "std":
        return std
    if statistic == "dissimilarity":
        return np.sqrt((1 - mean) ** 2 + std**2)
    raise UserError(f"statistic={statistic!r} is not accepted; accepted: {', '.join(STATISTICS)}")


def quantiles(replicates: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-element quantile (numpy's 'linear' rule, NaN ignored) of replicates [R, ...]
    at levels q shaped replicates.shape[1:] (each element may have its own level)."""
    sorted_r = np.sort(replicates, axis=0)  # NaN last
    n_valid = (~np.isnan(replicates)).sum(0)
    pos = np.clip(q, 0, 1) * np.maximum(n_valid - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n_valid - 1, 0))
    v_lo = np.take_along_axis(sorted_r, lo[None], 0)[0]
    v_hi = np.take_along_axis(sorted_r, hi[None], 0)[0]
    out = v_lo + (pos - lo) * (v_hi - v_lo)
    return np.where((n_valid > 0) & np.isfinite(q), out, np.nan)


def percentile_interval(replicates: np.ndarray, ci: float):
    """(low, high) percentile interval of replicates [R, ...]."""
    alpha = (1 - ci) / 2
    shape = replicates.shape[1:]
    return (quantiles(replicates, np.full(shape, alpha)),
            quantiles(replicates, np.full(shape, 1 - alpha)))


def bca_interval(replicates: np.ndarray, estimate: np.ndarray, jackknife: np.ndarray, ci: float):
    """Bias-corrected and accelerated interval (Efron 1987), as scipy.stats.bootstrap.

    replicates [R, ...], estimate [...], jackknife [N, ...] leave-one-out values (NaN for
    images that do not count). Elements where the correction is undefined (all replicates
    on one side of the estimate, zero jackknife spread) fall back to the percentile interval.
    """
    n_valid = (~np.isnan(replicates)).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        below = (replicates < estimate[None]).sum(0) / n_valid
        z0 = ndtri(below)
        jack_mean = np.nanmean(jackknife, axis=0) if jackknife.size else np.nan
        d = jack_mean[None] - jackknife
        accel = np.nansum(d**3, 0) / (6 * np.nansum(d**2, 0) ** 1.5)
    low_p, high_p = percentile_interval(replicates, ci)
    out = []
    for z_alpha, fallback in ((ndtri((1 - ci) / 2), low_p), (ndtri((1 + ci) / 2), high_p)):
        with np.errstate(invalid="ignore", divide="ignore"):
            level = ndtr(z0 + (z0 + z_alpha) / (1 - accel * (z0 + z_alpha)))
        ok = np.isfinite(level)
        value = quantiles(replicates, np.where(ok, level, 0.5))
        out.append(np.where(ok, value, fallback))
    return out[0], out[1]


def jackknife_weights(n: int) -> np.ndarray:
    """[N, N] weights of the N leave-one-out samples (row i drops image i)."""
    return 1.0 - np.eye(n)
