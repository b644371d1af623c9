"""How many images are enough? The spread of the similarity matrix over random subsets of
n images, and its distance to the full-set matrix, as n grows."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..errors import UserError
from ._inputs import per_image_matrix
from .resample import weighted_statistic

SUBSET_STATISTICS = ("mean", "dissimilarity")


def subset_weights(n: int, size: int, n_subsets: int, rng: np.random.Generator) -> np.ndarray:
    """[n_subsets, n] 0/1 weights of random subsets of `size` images (without replacement)."""
    keys = rng.random((n_subsets, n))
    chosen = np.argsort(keys, axis=1)[:, :size]
    weights = np.zeros((n_subsets, n))
    np.put_along_axis(weights, chosen, 1.0, axis=1)
    return weights


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of a [S, P] with b [P] (NaN columns dropped)."""
    keep = np.isfinite(b) & np.isfinite(a).all(0)
    if keep.sum() < 2:
        return np.full(a.shape[0], np.nan)
    ra = rankdata(a[:, keep], axis=1)
    rb = rankdata(b[keep])
    ra = ra - ra.mean(1, keepdims=True)
    rb = rb - rb.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return ra @ rb / (np.linalg.norm(ra, axis=1) * np.linalg.norm(rb))


def sample_size_curve(
    per_image,
    sizes,
    n_subsets: int = 50,
    seed: int = 0,
    statistic: str = "dissimilarity",
    names=None,
    ddof: int = 0,
) -> pd.DataFrame:
    """For each subset size n: how much the models x models matrix moves across random
    subsets of n images (drawn without replacement, seeded) and how far it is from the
    matrix on all N images. Only distinct model pairs count (upper triangle for square
    matrices; every entry otherwise).

    Columns: n, spread (mean over pairs of the std across subsets), max_spread,
    mean_abs_diff (mean over subsets and pairs of |subset - full|), frobenius (mean over
    subsets of the root-sum-square difference over pairs), rank_correlation (mean Spearman
    correlation between the subset's and the full matrix's pair values: does the
    ordering of pairs hold?). ddof: of the std in the dissimilarity (as compare.aggregate).
    """
    if statistic not in SUBSET_STATISTICS:
        raise UserError(f"statistic={statistic!r} is not accepted; accepted: "
                        f"{', '.join(SUBSET_STATISTICS)}")
    if not isinstance(n_subsets, int) or n_subsets < 2:
        raise UserError(f"n_subsets={n_subsets!r} is not accepted; accepted: an int >= 2")
    values, rows, cols = per_image_matrix(per_image, names)
    m, k, n = values.shape
    sizes = [int(s) for s in sizes]
    bad = [s for s in sizes if not 1 <= s <= n]
    if bad or not sizes:
        raise UserError(f"sizes {bad or sizes} are not accepted; accepted: ints in 1..{n}")
    pairs = np.triu_indices(m, 1) if rows == cols else np.nonzero(np.ones((m, k), bool))
    series = values[pairs]  # [P, N]
    full = weighted_statistic(series, np.ones((1, n)), statistic, ddof)[0]
    rng = np.random.default_rng(seed)
    records = []
    for size in sizes:
        sub = weighted_statistic(series, subset_weights(n, size, n_subsets, rng), statistic,
                                 ddof)
        diff = sub - full[None]
        with np.errstate(invalid="ignore"):
            spread = np.nanstd(sub, axis=0, ddof=1)
        records.append({
            "n": size,
            "spread": float(np.nanmean(spread)),
            "max_spread": float(np.nanmax(spread)),
            "mean_abs_diff": float(np.nanmean(np.abs(diff))),
            "frobenius": float(np.mean(np.sqrt(np.nansum(diff**2, axis=1)))),
            "rank_correlation": float(np.nanmean(_spearman_rows(sub, full))),
        })
    out = pd.DataFrame(records)
    out.attrs.update({"n_images": n, "n_subsets": n_subsets, "seed": seed,
                      "statistic": statistic, "n_pairs": int(series.shape[0])})
    return out
