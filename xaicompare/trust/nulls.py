"""Null baselines for explanation similarity, and chance-corrected scores.

How similar would two models' maps be by chance? Two references:
- centre bias: a fixed centred Gaussian prior map; each model's similarity to it says
  how much of its maps a "look at the middle" heuristic explains;
- shuffled images: the same two models compared on mismatched images (a derangement of
  the images of one model), keeping each model's own map statistics.
chance-corrected = (observed - null) / (1 - null): 1 = identical maps, 0 = no more alike
than the null, < 0 = less.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..compare.batched import as_tensor
from ..compare.matrix import cross_method_similarity
from ..compare.similarity import aggregate_array
from ..errors import UserError
from ._inputs import model_names


def centre_bias_map(h: int, w: int, sigma_frac: float = 0.25) -> torch.Tensor:
    """Centred Gaussian map [h, w] (peak 1) with sigma = sigma_frac * h (rows) and
    sigma_frac * w (columns), centred at ((h - 1) / 2, (w - 1) / 2)."""
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        raise UserError(f"h and w must be positive ints, got {h!r}, {w!r}")
    if not isinstance(sigma_frac, int | float) or sigma_frac <= 0:
        raise UserError(f"sigma_frac={sigma_frac!r} is not accepted; accepted: a number > 0")
    ys = (torch.arange(h, dtype=torch.float64) - (h - 1) / 2) / (sigma_frac * h)
    xs = (torch.arange(w, dtype=torch.float64) - (w - 1) / 2) / (sigma_frac * w)
    return torch.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))


def _maps(maps) -> torch.Tensor:
    t = as_tensor(maps, "maps")
    if t.ndim != 4:
        raise UserError(f"maps must be [M, N, H, W] (models x images x ...), got {tuple(t.shape)}")
    return t


def centre_bias_similarity(
    maps,
    metric: str = "cosine",
    names=None,
    sigma_frac: float = 0.25,
    options=None,
    **metric_options,
) -> pd.DataFrame:
    """Each model's maps [M, N, H, W] against the centre prior: rows = models, columns
    mean, std, median, n (images used). Same metric, options and degenerate policy as
    compare; for rbf pass the sigma the observed matrix used (its params['sigma'])."""
    t = _maps(maps)
    names = model_names(names, t.shape[0])
    prior = centre_bias_map(t.shape[2], t.shape[3], sigma_frac).to(t.dtype)
    prior_stack = prior.expand(1, t.shape[1], *prior.shape)
    result = cross_method_similarity(t, prior_stack, metric, options, **metric_options)
    summary = aggregate_array(result.per_image[:, 0, :])
    out = pd.DataFrame({k: summary[k] for k in ("mean", "std", "median", "n")}, index=names)
    out.attrs.update({"metric": metric, "params": result.params, "sigma_frac": sigma_frac})
    return out


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation of range(n) with no fixed point (rejection sampling)."""
    if n < 2:
        raise UserError(f"a shuffled null needs at least 2 images, got {n}")
    while True:
        perm = rng.permutation(n)
        if not (perm == np.arange(n)).any():
            return perm


def shuffled_null(
    maps,
    metric: str = "cosine",
    n_shuffles: int = 10,
    seed: int = 0,
    names=None,
    options=None,
    symmetric: bool = True,
    **metric_options,
) -> pd.DataFrame:
    """[M, M] mean similarity of model i's map of image n with model j's map of image
    pi(n), over images and `n_shuffles` random derangements pi (seeded).

    The diagonal is a model against itself on other images. symmetric=True averages
    (i, j) and (j, i), which are two draws of the same null. attrs: 'std' (DataFrame of
    the std over shuffles of the per-shuffle means), 'n_shuffles', 'seed', 'params'.
    """
    if not isinstance(n_shuffles, int) or n_shuffles < 1:
        raise UserError(f"n_shuffles={n_shuffles!r} is not accepted; accepted: an int >= 1")
    t = _maps(maps)
    names = model_names(names, t.shape[0])
    rng = np.random.default_rng(seed)
    means = []
    params = {}
    for _ in range(n_shuffles):
        perm = torch.from_numpy(derangement(t.shape[1], rng))
        result = cross_method_similarity(t, t[:, perm], metric, options, **metric_options)
        mean = aggregate_array(result.per_image)["mean"]
        means.append((mean + mean.T) / 2 if symmetric else mean)
        params = result.params
    stack = np.stack(means)
    out = pd.DataFrame(stack.mean(0), index=names, columns=names)
    out.attrs.update({
        "std": pd.DataFrame(stack.std(0, ddof=1) if n_shuffles > 1 else np.full_like(
            stack[0], np.nan), index=names, columns=names),
        "n_shuffles": n_shuffles, "seed": seed, "metric": metric, "params": params,
    })
    return out


def chance_corrected(observed, null):
    """(observed - null) / (1 - null), elementwise; NaN where null is 1 (no room above it)."""
    observed = observed.astype(float) if isinstance(observed, pd.DataFrame) else np.asarray(
        observed, dtype=float)
    null = null.astype(float) if isinstance(null, pd.DataFrame) else np.asarray(null, float)
    denom = 1.0 - null
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (observed - null) / denom
    return out.where(denom != 0) if isinstance(out, pd.DataFrame) else np.where(
        denom != 0, out, np.nan)


def null_table(
    observed_mean: pd.DataFrame,
    centre: pd.Series | pd.DataFrame,
    shuffled: pd.DataFrame,
) -> pd.DataFrame:
    """One row per model pair (a < b in the matrix order): observed mean similarity beside
    its nulls and the chance-corrected scores.

    observed_mean: [M, M] DataFrame (SimilarityResult.mean); centre: per-model similarity
    to the centre prior (centre_bias_similarity(...) or its 'mean' column); shuffled:
    [M, M] from shuffled_null. The centre null of a pair is centre[a] * centre[b]: the
    cosine two maps would have if they shared only their centre-prior component (exact for
    cosine when the rest of each map is orthogonal to the prior and to the other map).
    """
    if isinstance(centre, pd.DataFrame):
        centre = centre["mean"]
    for name, frame in (("observed_mean", observed_mean), ("shuffled", shuffled)):
        if not isinstance(frame, pd.DataFrame) or frame.shape[0] != frame.shape[1]:
            raise UserError(f"{name} must be a square DataFrame (models x models)")
    models = [str(m) for m in observed_mean.index]
    missing = [m for m in models if m not in shuffled.index or m not in centre.index]
    if missing:
        raise UserError(f"models {missing} are missing from the centre or shuffled null")
    obs = observed_mean.loc[models, models].to_numpy(dtype=float)
    shuf = shuffled.loc[models, models].to_numpy(dtype=float)
    cen = centre.loc[models].to_numpy(dtype=float)
    i, j = np.triu_indices(len(models), 1)
    centre_pair = cen[i] * cen[j]
    return pd.DataFrame({
        "model_a": [models[a] for a in i],
        "model_b": [models[b] for b in j],
        "observed": obs[i, j],
        "shuffled_null": shuf[i, j],
        "centre_null": centre_pair,
        "chance_corrected_shuffled": chance_corrected(obs[i, j], shuf[i, j]),
        "chance_corrected_centre": chance_corrected(obs[i, j], centre_pair),
    })
