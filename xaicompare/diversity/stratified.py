"""Explanation agreement split by prediction outcome and by class, with intervals.

Do two models explain alike more often when both are right? For every pair, the per-image
similarities are split into strata (both correct / one correct / both wrong, and each true
class); each stratum gets its mean, a percentile bootstrap interval over its own images and
its count. Strata with fewer than `min_count` images are kept but flagged (`enough` False,
no interval), so a reader never takes a mean of two images for a finding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ..errors import UserError
from ..validation import as_correct, as_labels, as_numpy, check_names

OUTCOME_STRATA = {2: "both_correct", 1: "one_correct", 0: "both_wrong"}


def stratified_agreement(
    per_image_sim: ArrayLike,
    correct: ArrayLike,
    labels: ArrayLike | None = None,
    names: Sequence[str] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    min_count: int = 5,
    n_resamples: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Mean similarity of each model pair per outcome stratum (and per class if labels given).

    per_image_sim: [M, M, N] similarity of models i and j on image n (NaN = not comparable);
    correct: [M, N] booleans; labels: [N] true class ids (optional).
    Returns a long table: model_a, model_b, split ("outcome" | "class"), stratum, mean,
    low, high, n, enough. The bootstrap for a stratum resamples that stratum's images,
    reproducibly from `seed`.
    """
    sim = as_numpy(per_image_sim, "per_image_sim", 3).astype(np.float64)
    c = as_correct(correct, "correct", 2).astype(bool)
    m, _, n = sim.shape
    if sim.shape[1] != m or c.shape != (m, n):
        raise UserError(f"per_image_sim must be [M, M, N] and correct [M, N]; got {sim.shape}, "
                        f"{c.shape}")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise UserError(f"min_count={min_count!r} is not accepted; accepted: an int >= 1")
    names = check_names(names, m) or [str(i) for i in range(m)]
    y = None if labels is None else as_labels(labels, n)
    rng = np.random.default_rng(seed)
    records = []
    for i, j in zip(*np.triu_indices(m, k=1), strict=True):
        strata = [("outcome", OUTCOME_STRATA[k], c[i].astype(int) + c[j] == k)
                  for k in OUTCOME_STRATA]
        if y is not None:
            strata += [("class", _class_name(k, class_names), y == k) for k in np.unique(y)]
        for split, stratum, mask in strata:
            values = sim[i, j][mask]
            values = values[np.isfinite(values)]
            records.append({"model_a": names[i], "model_b": names[j], "split": split,
                            "stratum": stratum,
                            **_summary(values, min_count, n_resamples, rng, ci)})
    return pd.DataFrame.from_records(records)


def _class_name(k: int, class_names: Sequence[str] | None) -> str:
    return str(class_names[k]) if class_names is not None and k < len(class_names) else str(k)


def _summary(values: np.ndarray, min_count: int, n_resamples: int, rng, ci: float) -> dict:
    size = len(values)
    mean = float(values.mean()) if size else np.nan
    if size < min_count:
        return {"mean": mean, "low": np.nan, "high": np.nan, "n": size, "enough": False}
    means = values[rng.integers(0, size, (n_resamples, size))].mean(axis=1)
    alpha = (1 - ci) / 2
    return {"mean": mean, "low": float(np.quantile(means, alpha)),
            "high": float(np.quantile(means, 1 - alpha)), "n": size, "enough": True}
