"""LIME (Ribeiro et al. 2016) over superpixels, as captum's `Lime` computes it.

Features, baseline and coalitions are KernelSHAP's (see kernelshap.py): the same SLIC
superpixels and, for the same image seed and n_samples, the very same coalition matrix
(rows: the empty coalition, the full image, then the sampled ones), so LIME and KernelSHAP
differ only in the kernel and the regression, and every model is explained over the same
coalitions. (LIME's own sampler draws features uniformly, Bernoulli(1/2); the Shapley-kernel
design spends more evaluations on small and large coalitions. Both are samples of the same
perturbation space; sharing one set makes the two methods comparable image by image.)

Kernel (captum's default `get_exp_kernel_similarity_function("cosine", 1.0)`): the weight of
a coalition z is exp(-d^2 / (2 kernel_width^2)), d = 1 - cos(x, x_z) between the image and
its perturbed copy in pixel space ("euclidean": d = ||x - x_z||).
Regression (captum's default interpretable model `SkLearnLasso(alpha=0.01)`): a weighted
sklearn Lasso with intercept of the target score on the binary coalition vectors;
"ridge" (the `lime` package's default model, use alpha=1 for its setting) and "linear" too.
The map paints each superpixel's coefficient on its pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import Lasso, LinearRegression, Ridge

from ..errors import UserError
from .kernelshap import score_coalitions
from .registry import Explanation, register_method

REGRESSIONS = ("lasso", "ridge", "linear")
DISTANCES = ("cosine", "euclidean")


def coalition_distances(images: torch.Tensor, baseline: torch.Tensor, segments: torch.Tensor,
                        masks: torch.Tensor, distance: str) -> torch.Tensor:
    """d(x, x_z) [B, R] for every coalition row, from per-superpixel sums (float64), without
    building the perturbed images: x_z is x on kept superpixels and the baseline elsewhere."""
    batch, n_features = masks.shape[0], masks.shape[2]
    x, b = images.to(torch.float64).flatten(2), baseline.to(torch.float64).flatten(2)
    seg = segments.reshape(batch, -1)

    def per_segment(values: torch.Tensor) -> torch.Tensor:  # [B, H*W] -> [B, M]
        out = torch.zeros(batch, n_features, dtype=torch.float64, device=values.device)
        return out.scatter_add_(1, seg, values)

    z = masks.to(torch.float64)
    if distance == "euclidean":
        gap = per_segment(((x - b) ** 2).sum(1))
        return ((1 - z) @ gap[:, :, None])[..., 0].clamp_min(0).sqrt()
    xx, xb, bb = (per_segment((u * v).sum(1)) for u, v in ((x, x), (x, b), (b, b)))
    dot = torch.einsum("brm,bm->br", z, xx) + torch.einsum("brm,bm->br", 1 - z, xb)
    norm_z = torch.einsum("brm,bm->br", z, xx) + torch.einsum("brm,bm->br", 1 - z, bb)
    norm_x = xx.sum(1, keepdim=True)
    cosine = dot / (norm_x * norm_z).clamp_min(0).sqrt().clamp_min(1e-8)
    return 1 - cosine


def fit_interpretable_model(z: np.ndarray, y: np.ndarray, w: np.ndarray, regression: str,
                            alpha: float) -> tuple[np.ndarray, float]:
    """(coefficients [M], intercept) of the weighted regression y ~ z (sklearn, as captum)."""
    if regression == "lasso":
        model = Lasso(alpha=alpha)
    elif regression == "ridge":
        model = Ridge(alpha=alpha)
    else:
        model = LinearRegression()
    model.fit(z, y, sample_weight=w)
    return np.asarray(model.coef_, dtype=np.float64).reshape(-1), float(model.intercept_)


@register_method("lime", signed=True, display_name="LIME", family="perturbation",
                 budget="n_samples", minimums={"n_samples": 3, "n_segments": 2},
                 randomization=False,  # the randomised copy would need the stored superpixels
                 cost=lambda p, n, s: (n * p["n_samples"], 0, False))  # as KernelSHAP's
def lime(model, images: torch.Tensor, target: torch.Tensor, *,
         n_samples: int = 350, n_segments: int = 50, compactness: float = 10.0,
         baseline="black", kernel_width: float = 1.0, distance: str = "cosine",
         regression: str = "lasso", alpha: float = 0.01,
         segments: torch.Tensor | None = None, seed: int = 0,
         image_seeds: torch.Tensor | None = None, batch_size: int | None = None
         ) -> Explanation:
    """LIME coefficients of superpixels, painted back onto their pixels.

    n_samples:    model evaluations per image, the empty and full image included (as for
                  KernelSHAP, whose coalitions these are): at least n_features + 2.
    kernel_width, distance: the exponential kernel (see module docstring).
    regression, alpha: "lasso" (default, alpha 0.01) | "ridge" | "linear" (alpha unused).
    segments, seed, image_seeds, baseline, batch_size: as for KernelSHAP.
    extras: coef [B, M_max] (NaN past M_b), intercept [B], n_features [B].
    """
    batch, _, height, width = images.shape
    if regression not in REGRESSIONS:
        raise UserError(f"unknown regression '{regression}'; accepted: {', '.join(REGRESSIONS)}")
    if distance not in DISTANCES:
        raise UserError(f"unknown distance '{distance}'; accepted: {', '.join(DISTANCES)}")
    for name, value in (("kernel_width", kernel_width), ("alpha", alpha)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise UserError(f"{name} must be a number > 0, got {value!r}")
    segments_given = segments is not None
    scored = score_coalitions(model, images, target, n_samples=n_samples,
                              n_segments=n_segments, compactness=compactness,
                              segments=segments, seed=seed, image_seeds=image_seeds,
                              baseline=baseline, batch_size=batch_size)
    segments, n_features, masks = scored.segments, scored.n_features, scored.masks
    n_rows, values, base_images = scored.n_rows, scored.values, scored.base_images
    distances = coalition_distances(images, base_images, segments, masks, distance)
    kernel = torch.exp(-distances**2 / (2 * float(kernel_width) ** 2))

    # captum hands float32 arrays to sklearn; so do we, so the solver sees the same numbers
    coef = torch.full(masks.shape[::2], float("nan"), dtype=torch.float64)
    intercept = torch.empty(batch, dtype=torch.float64)
    z_all, y_all, w_all = (t.cpu().float().numpy() for t in (masks, values, kernel))
    for b in range(batch):
        rows, m = int(n_rows[b]), int(n_features[b])
        if not np.isfinite(y_all[b, :rows]).all():  # a score that is not a number: NaN map
            intercept[b] = float("nan")
            continue
        coef_b, intercept[b] = fit_interpretable_model(
            z_all[b, :rows, :m], y_all[b, :rows], w_all[b, :rows], regression, float(alpha))
        coef[b, :m] = torch.from_numpy(coef_b)
    coef = coef.to(images.device)
    maps = torch.gather(torch.where(torch.isnan(intercept.to(coef.device))[:, None], coef,
                                    torch.nan_to_num(coef)), 1, segments.reshape(batch, -1))
    extras = {"coef": coef.to(torch.float32), "intercept": intercept.to(images),
              "n_features": n_features.to(images.device)}
    params = {"n_samples": n_samples, "n_segments": n_segments, "compactness": compactness,
              "baseline": baseline if isinstance(baseline, str | int | float) else "tensor",
              "kernel_width": float(kernel_width), "distance": distance,
              "regression": regression, "alpha": float(alpha),
              "segments": "given" if segments_given else "slic", "seed": seed,
              "image_seeds": image_seeds is not None, "design": "kernelshap-shared"}
    return Explanation(maps.view(batch, height, width).to(images.dtype), extras, params)
