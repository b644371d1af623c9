"""Cross-model consensus and structural similarity of explanation maps.

Consensus (Li et al., "Cross-model consensus of explanations", Machine Learning 2023): per
image, the consensus map is the mean of all models' normalised maps; a model's consensus
score is the similarity of its map to the mean of the *other* models' maps (leave-one-out,
so a model is never compared with itself), averaged over images, with a bootstrap interval.

SSIM (Wang et al. 2004) as scikit-image's `structural_similarity` computes it by default: a
uniform win_size x win_size window, K1 = 0.01, K2 = 0.03, sample covariances, the mean over
the windows that lie fully inside the map.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..errors import UserError
from .batched import as_tensor
from .matrix import model_names
from .metrics import MetricProperties, register_metric
from .preprocess import normalize
from .similarity import similarity

NORMALIZATIONS = ("minmax", "maxabs", "l2", "none")


@dataclass
class ConsensusResult:
    """consensus: [N, H, W] mean normalised map; per_image: [M, N] leave-one-out scores."""

    consensus: np.ndarray
    per_image: np.ndarray
    table: pd.DataFrame  # model, score, low, high, n
    params: dict = field(default_factory=dict)


def consensus(maps, names=None, *, metric: str = "cosine", normalization: str = "maxabs",
              n_resamples: int = 1000, seed: int = 0, ci: float = 0.95,
              **metric_options) -> ConsensusResult:
    """Consensus maps and each model's leave-one-out consensus score.

    maps: [M, N, H, W] (models x images), numpy or torch; at least 3 models.
    metric: any similarity metric (metric_options go to it); the maps are normalised
        (`normalization`) before averaging, and compared without further normalisation.
        'maxabs' (default) divides by max |map|: zero and sign stay where they are, so a
        signed map's background does not become a shared mid-grey that every model agrees on
        (min-max made every IG consensus score ~0.97 on the quickstart).
    A degenerate map (all zero, constant, non-finite) is left out of its image's consensus
    and gets a NaN score there; `n` counts each model's scored images.
    """
    x = as_tensor(maps, "maps")
    if x.ndim != 4 or not x.is_floating_point():
        raise UserError(f"maps must be floating point [M, N, H, W], got {x.dtype} "
                        f"{tuple(x.shape)}")
    m, n = x.shape[:2]
    if m < 3:
        raise UserError(f"consensus needs at least 3 models (leave-one-out of 2 is a pairwise "
                        f"similarity), got {m}")
    if normalization not in NORMALIZATIONS:
        raise UserError(f"normalization={normalization!r} is not accepted; accepted: "
                        f"{', '.join(NORMALIZATIONS)}")
    names = model_names(names, m)
    flat = normalize(x.double().reshape(m, n, -1), normalization)
    # A degenerate map (all zero, constant, non-finite) joins no consensus: NaN is its score.
    valid = torch.isfinite(flat).all(-1) & (flat.amax(-1) > flat.amin(-1))  # [M, N]
    flat = flat.masked_fill(~valid[..., None], 0.0)
    total, count = flat.sum(0), valid.sum(0).double()[:, None]  # [N, D], [N, 1]
    scores = []
    for i in range(m):
        others = (total - flat[i]) / (count - valid[i].double()[:, None])
        score = np.asarray(similarity(flat[i].reshape(x.shape[1:]),
                                      others.reshape(x.shape[1:]), metric,
                                      options={"normalization": "none"}, **metric_options))
        scores.append(np.where(valid[i].numpy(), score, np.nan))
    per_image = np.stack(scores)
    low, high = _mean_interval(per_image, n_resamples, seed, ci)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a model with no finite score: NaN
        score = np.nanmean(per_image, 1)
    table = pd.DataFrame({"model": names, "score": score, "low": low, "high": high,
                          "n": np.isfinite(per_image).sum(1)})
    params = {"metric": metric, "normalization": normalization, "n_resamples": n_resamples,
              "seed": seed, "ci": ci, **metric_options}
    return ConsensusResult((total / count).reshape(x.shape[1:]).numpy(), per_image, table,
                           params)


def _mean_interval(values: np.ndarray, n_resamples: int, seed: int, ci: float):
    """Percentile bootstrap of each row's NaN-skipping mean over the images."""
    idx = np.random.default_rng(seed).integers(0, values.shape[1], (n_resamples, values.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN bounds, by design
        means = np.nanmean(values[:, idx], axis=-1)  # [M, R]
        alpha = (1 - ci) / 2
        return np.nanquantile(means, alpha, axis=1), np.nanquantile(means, 1 - alpha, axis=1)


def consensus_accuracy_correlation(scores, accuracy) -> dict:
    """Spearman rank correlation of the consensus scores with the models' accuracy.

    scores: a ConsensusResult, or its table (columns model, score); accuracy: one value per
    model, in the table's model order or as a mapping model -> accuracy.
    """
    from scipy.stats import spearmanr

    table = scores.table if isinstance(scores, ConsensusResult) else scores
    if isinstance(accuracy, dict | pd.Series):
        acc = pd.Series(accuracy, dtype=float).reindex(table["model"]).to_numpy()
    else:
        acc = np.asarray(accuracy, dtype=float)
    if acc.shape != (len(table),) or not np.isfinite(acc).all():
        raise UserError(f"accuracy must give one finite value per model "
                        f"({list(table['model'])})")
    score = table["score"].to_numpy(dtype=float)
    ok = np.isfinite(score)
    if ok.sum() < 3 or np.ptp(acc[ok]) == 0 or np.ptp(score[ok]) == 0:
        return {"spearman": np.nan, "p_value": np.nan, "n_models": int(ok.sum()),
                "note": "undefined: fewer than 3 scored models, or accuracy or score is the "
                        "same for every model"}
    rho, p = spearmanr(score[ok], acc[ok])
    return {"spearman": float(rho), "p_value": float(p), "n_models": int(ok.sum())}


def ssim_map(x: torch.Tensor, y: torch.Tensor, win_size: int, data_range: float,
             k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """SSIM of each window of x [B, 1, H, W] and y (scikit-image's default formula)."""
    def pool(t):
        return torch.nn.functional.avg_pool2d(t, win_size, stride=1)

    ux, uy = pool(x), pool(y)
    cov_norm = win_size**2 / (win_size**2 - 1)  # sample covariance, as scikit-image
    vx = cov_norm * (pool(x * x) - ux * ux)
    vy = cov_norm * (pool(y * y) - uy * uy)
    vxy = cov_norm * (pool(x * y) - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def _check_win(params: dict) -> dict:
    win = params["win_size"]
    if isinstance(win, bool) or not isinstance(win, int) or win < 3 or win % 2 == 0:
        raise UserError(f"ssim win_size={win!r} is not accepted; accepted: an odd int >= 3")
    return params


@register_metric("ssim", defaults={"win_size": 7}, check=_check_win, normalization="minmax",
                 spatial=True, properties=MetricProperties(-1, 1, True, ("positive scaling",
                                                                         "shift")))
def ssim_pairwise(x: torch.Tensor, y: torch.Tensor, win_size: int = 7,
                  shape: tuple[int, int] | None = None) -> torch.Tensor:
    """Mean SSIM [M, K, n] of min-max normalised maps (data range 1), window win_size."""
    m, n = x.shape[:2]
    k = y.shape[0]
    if win_size > min(shape):
        raise UserError(f"ssim win_size={win_size} is larger than the maps {tuple(shape)}")
    yy = y.reshape(k * n, 1, *shape)
    out = torch.empty(m, k, n, dtype=x.dtype, device=x.device)
    for i in range(m):  # one model of x against every model of y at once
        xi = x[i].reshape(1, n, *shape).expand(k, n, *shape).reshape(k * n, 1, *shape)
        out[i] = ssim_map(xi, yy, win_size, 1.0).mean(dim=(1, 2, 3)).view(k, n)
    return out


def ssim(maps_a, maps_b, *, data_range: float = 1.0, win_size: int = 7,
         normalization: str = "minmax", k1: float = 0.01, k2: float = 0.03):
    """Per-image structural similarity of maps_a[i] and maps_b[i] -> [B].

    maps: [B, H, W], numpy or torch (the result has the same type). Each map is normalised
    first (`normalization`; 'minmax' puts it in [0, 1], matching data_range=1).
    Equals skimage.metrics.structural_similarity(a, b, data_range=data_range,
    win_size=win_size) on the normalised maps.
    """
    a, b = as_tensor(maps_a, "maps_a"), as_tensor(maps_b, "maps_b")
    if a.shape != b.shape or a.ndim != 3:
        raise UserError(f"maps_a and maps_b must both be [B, H, W], got {tuple(a.shape)} "
                        f"and {tuple(b.shape)}")
    if win_size < 3 or win_size % 2 == 0 or win_size > min(a.shape[-2:]):
        raise UserError(f"win_size={win_size} must be odd, >= 3 and at most the map size "
                        f"{tuple(a.shape[-2:])}")
    if normalization not in NORMALIZATIONS:
        raise UserError(f"normalization={normalization!r} is not accepted; accepted: "
                        f"{', '.join(NORMALIZATIONS)}")
    if not data_range > 0:
        raise UserError(f"data_range must be > 0, got {data_range!r}")
    shape = a.shape
    x, y = (normalize(t.double().reshape(shape[0], -1), normalization).reshape(shape)[:, None]
            for t in (a, b))
    s = ssim_map(x, y, win_size, data_range, k1, k2)
    values = s.mean(dim=(1, 2, 3))
    if isinstance(maps_a, torch.Tensor):
        return values.to(maps_a.device)
    return values.numpy()
