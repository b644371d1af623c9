"""Representation similarity: centred kernel alignment (CKA) between models' features.

Kornblith et al. (2019), "Similarity of Neural Network Representations Revisited":
CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) for Gram matrices K, L of the same
images under two models. `debiased=True` uses the unbiased HSIC estimator of Song et al.
(2012) (zero diagonals), which removes CKA's upward bias when features outnumber images.

All models are handled in one pass over blocks of Gram rows: each model's rows
G_m[R] = k(X_m[R], X_m) are formed once per block (only on and right of the diagonal: the
Gram matrices are symmetric), and every pair's sum of products tr(K~ L~) accumulates as one
small Gram product of the flattened blocks, so memory stays at M x block x N however many
images there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..errors import UserError, unknown_name_error

KERNELS = ("linear", "rbf")
ROW_BLOCK_ELEMENTS = 2**24  # entries of one model's Gram-row block (64 MB in float32)
RBF_SIGMA_IMAGES = 2048  # images (evenly spaced) whose median distance sets the RBF width


@dataclass
class CKAResult:
    """CKA of every pair of models; low/high are bootstrap bounds when resampled."""

    estimate: pd.DataFrame
    low: pd.DataFrame | None = None
    high: pd.DataFrame | None = None
    params: dict = field(default_factory=dict)

    def dissimilarity(self) -> pd.DataFrame:
        """1 - CKA: 0 for identical representations (up to rotation and scale)."""
        return 1.0 - self.estimate


def _as_features(features, names) -> tuple[torch.Tensor, list[str]]:
    if isinstance(features, dict):
        names = list(features) if names is None else list(names)
        features = [features[n] for n in names]
    if isinstance(features, list | tuple):
        parts = [torch.as_tensor(np.asarray(f)) if not isinstance(f, torch.Tensor)
                 else f.detach() for f in features]  # features straight from a forward pass
        if len({f.shape[0] for f in parts}) != 1 or any(f.ndim != 2 for f in parts):
            raise UserError("features must be one [N, F] array per model, all with the same N "
                            f"images; got shapes {[tuple(f.shape) for f in parts]}")
        dtype = torch.float64 if any(f.dtype == torch.float64 for f in parts) else torch.float32
        width = max(f.shape[1] for f in parts)  # zero padding changes no kernel value
        features = torch.stack([torch.nn.functional.pad(f.to(dtype), (0, width - f.shape[1]))
                                for f in parts])
    x = (features.detach() if isinstance(features, torch.Tensor)
         else torch.as_tensor(np.asarray(features)))
    if x.ndim != 3:
        raise UserError(f"features must be [M, N, F] (models x images x features), got shape "
                        f"{tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    if not bool(torch.isfinite(x).all()):
        bad = [i for i in range(x.shape[0]) if not bool(torch.isfinite(x[i]).all())]
        raise UserError(f"features of model(s) {bad} contain NaN or inf")
    m, n = x.shape[:2]
    if n < 4:
        raise UserError(f"CKA needs at least 4 images (the unbiased estimator divides by "
                        f"n - 3), got {n}")
    names = [str(i) for i in range(m)] if names is None else [str(s) for s in names]
    if len(names) != m:
        raise UserError(f"{len(names)} names for {m} models")
    return x, names


def _rbf_widths(x: torch.Tensor, sigma_frac: float) -> torch.Tensor:
    """Per model: sigma_frac x the median distance between images (Kornblith et al.)."""
    n = x.shape[1]
    take = torch.linspace(0, n - 1, min(n, RBF_SIGMA_IMAGES)).round().long()
    sub = x[:, take]
    d = torch.cdist(sub, sub)
    iu = torch.triu_indices(len(take), len(take), 1)
    median = d[:, iu[0], iu[1]].median(dim=1).values  # lower median, like torch elsewhere
    if bool((median <= 0).any()):
        raise UserError("rbf CKA: a model maps all images to the same features (median "
                        "distance 0); use kernel='linear'")
    return sigma_frac * median


def _gram_block(x: torch.Tensor, rows: slice, cols: slice, kernel: str, sq: torch.Tensor,
                widths: torch.Tensor | None) -> torch.Tensor:
    """k(X_m[rows], X_m[cols]) for every model m -> [M, r, c]."""
    dots = torch.bmm(x[:, rows], x[:, cols].transpose(1, 2))
    if kernel == "linear":
        return dots
    d2 = (sq[:, rows, None] + sq[:, None, cols] - 2 * dots).clamp_min_(0)
    return torch.exp(-d2 / (2 * widths[:, None, None] ** 2))


def _hsic_terms(x: torch.Tensor, kernel: str, widths, debiased: bool):
    """Sufficient statistics of every pair: tr(K L) and every model's Gram row sums.

    The Gram matrices are symmetric, so only the blocks on and right of the diagonal are
    formed (half the products): an off-diagonal block counts twice in tr(K L) and gives
    its column sums to the rows it mirrors.
    """
    m, n, _ = x.shape
    sq = (x * x).sum(-1)  # [M, N]
    trace = torch.zeros(m, m, dtype=torch.float64)
    rowsums = torch.zeros(m, n, dtype=torch.float64)
    block = max(1, ROW_BLOCK_ELEMENTS // n)
    for start in range(0, n, block):
        stop = min(n, start + block)
        g = _gram_block(x, slice(start, stop), slice(start, n), kernel, sq, widths)
        if debiased:
            local = torch.arange(stop - start)
            g[:, local, local] = 0  # the unbiased estimator drops the diagonal
        diag, right = g[:, :, :stop - start], g[:, :, stop - start:]
        d, r = diag.reshape(m, -1), right.reshape(m, -1)
        trace += (d @ d.T).double() + 2 * (r @ r.T).double()
        rowsums[:, start:stop] += g.sum(-1).double()
        rowsums[:, stop:] += right.sum(1).double()
    return trace, rowsums


def _cka_from_terms(trace, rowsums, n: int, debiased: bool) -> np.ndarray:
    total = rowsums.sum(1)  # 1' K 1
    cross = rowsums @ rowsums.T  # 1' K L 1
    if debiased:
        hsic = (trace + total[:, None] * total[None, :] / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * cross) / (n * (n - 3))
    else:  # tr(K H L H) / (n-1)^2 with H = I - 11'/n
        hsic = (trace - 2.0 / n * cross + total[:, None] * total[None, :] / n**2) / (n - 1) ** 2
    self_h = hsic.diagonal()
    with np.errstate(invalid="ignore", divide="ignore"):
        cka = hsic.numpy() / np.sqrt(np.outer(self_h.numpy(), self_h.numpy()))
    return cka


def cka_matrix(features, names=None, *, kernel: str = "linear", debiased: bool = True,
               sigma_frac: float = 0.8, n_resamples: int = 0, seed: int = 0,
               ci: float = 0.95) -> CKAResult:
    """CKA between every pair of models' representations of the same images.

    features: [M, N, F] (models x images x features; numpy or torch), a list of [N, F_m]
        arrays (features may differ in width between models) or a dict name -> [N, F_m].
    kernel: "linear" or "rbf" (width sigma_frac x each model's median distance between
        images, taken over up to 2,048 evenly spaced images and recorded in params).
    debiased: unbiased HSIC (Song et al. 2012); False gives the original (biased) CKA.
    n_resamples: bootstrap resamples of the images for percentile intervals (0: none).
        Images drawn twice count as one (their Gram entry is treated as the diagonal).
    Returns a CKAResult: estimate (models x models DataFrame, 1 on the diagonal), low/high.
    """
    if kernel not in KERNELS:
        raise unknown_name_error("CKA kernel", kernel, KERNELS)
    x, names = _as_features(features, names)
    x = x - x.mean(dim=1, keepdim=True)  # exact for HSIC, and fewer cancellation digits lost
    widths = _rbf_widths(x, sigma_frac) if kernel == "rbf" else None
    n = x.shape[1]
    trace, rowsums = _hsic_terms(x, kernel, widths, debiased)
    frame = lambda v: pd.DataFrame(v, index=names, columns=names)  # noqa: E731
    params = {"kernel": kernel, "debiased": debiased, "n_images": n}
    if widths is not None:
        params |= {"sigma_frac": sigma_frac,
                   "sigma": dict(zip(names, widths.tolist(), strict=True))}
    result = CKAResult(frame(_cka_from_terms(trace, rowsums, n, debiased)), params=params)
    if n_resamples:
        low, high = _bootstrap(x, kernel, widths, debiased, n_resamples, seed, ci)
        result.low, result.high = frame(low), frame(high)
        result.params |= {"n_resamples": n_resamples, "seed": seed, "ci": ci}
    return result


def _bootstrap(x, kernel, widths, debiased, n_resamples, seed, ci):
    """Percentile intervals from resampled images (full Gram matrices: for N up to a few
    thousand; resample a subset of images first for more)."""
    m, n, _ = x.shape
    if n > 8192:
        raise UserError(f"bootstrap CKA holds M x N x N Gram matrices; {n} images is too "
                        "many: pass a subset of at most 8192 images for the intervals")
    sq = (x * x).sum(-1)
    grams = _gram_block(x, slice(0, n), slice(0, n), kernel, sq, widths)  # [M, N, N]
    rng = np.random.default_rng(seed)
    reps = np.empty((n_resamples, m, m))
    for r in range(n_resamples):
        idx = torch.from_numpy(rng.integers(0, n, n))
        g = grams[:, idx][:, :, idx]
        if debiased:
            g = g.masked_fill(idx[:, None] == idx[None, :], 0)  # duplicates act as diagonal
        flat = g.reshape(m, -1)
        reps[r] = _cka_from_terms((flat @ flat.T).double(), g.sum(-1).double(), n, debiased)
    alpha = (1 - ci) / 2
    return np.nanquantile(reps, alpha, axis=0), np.nanquantile(reps, 1 - alpha, axis=0)


def cka(features_a, features_b, *, kernel: str = "linear", debiased: bool = True,
        sigma_frac: float = 0.8) -> float:
    """CKA of two representations [N, F_a] and [N, F_b] of the same N images."""
    result = cka_matrix([features_a, features_b], ["a", "b"], kernel=kernel,
                        debiased=debiased, sigma_frac=sigma_frac)
    return float(result.estimate.iloc[0, 1])
