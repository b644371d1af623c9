"""GradientSHAP (Lundberg & Lee 2017, "expected gradients"), as captum's `GradientShap`.

For each of `n_samples` draws per image: a baseline b from the baseline distribution, a
point alpha ~ U(0, 1) on the path and Gaussian noise e ~ N(0, stdevs^2) (absolute, in the
canonical [0, 1] frame; 0 = none, captum's default):

    x~ = x + e,   attr = mean over draws of (x~ - b) * dF/dx (b + alpha (x~ - b))

which is captum's NoiseTunnel(smoothgrad) over InputBaselineXGradient. The draws of an image
(baseline index, alpha, noise) come from its own seed on the CPU, so every model of a study
is explained with the same draws (common random numbers) and a map never depends on its
batch. The baseline distribution is a list of anything Integrated Gradients accepts as a
baseline ("black", "blur", "noise", ... or a grey level); the k-th "noise" entry is the noise
picture of seed + k, so ["noise", "noise"] is two different pictures.

All (image, draw) points of a batch go through chunked forward+backward passes,
`internal_batch_size` points per pass (see passes.py).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .baselines import make_baseline
from .gradients import AUTO_INPUTS_CPU, AUTO_INPUTS_CUDA
from .kernelshap import _seeds_per_image
from .passes import REDUCTIONS, inputs_per_pass, reduce_channels
from .registry import Explanation, register_method

DEFAULT_BASELINES = ("black", "blur")


def gradient_shap_draws(n_samples: int, n_baselines: int, stdevs: float,
                        shape: tuple[int, ...], seeds: list[int]
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(baseline index [B, n] long, alpha [B, n] float32, noise [B, n, *shape] or None when
    stdevs == 0), drawn on the CPU from each image's seed in that order."""
    indices, alphas, noises = [], [], []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        indices.append(torch.randint(n_baselines, (n_samples,), generator=generator))
        alphas.append(torch.rand(n_samples, generator=generator))
        if stdevs > 0:
            noises.append(torch.randn((n_samples, *shape), generator=generator) * stdevs)
    noise = torch.stack(noises) if noises else None
    return torch.stack(indices), torch.stack(alphas), noise


def baseline_distribution(images: torch.Tensor, baselines, seed: int) -> torch.Tensor:
    """The baselines of every image [B, K, 3, H, W] (K entries of `baselines`)."""
    kinds = [baselines] if isinstance(baselines, str | int | float) else list(baselines)
    if not kinds:
        raise UserError("baselines must name at least one baseline, e.g. [black, blur]")
    return torch.stack([make_baseline(images, kind, seed=seed + k)
                        for k, kind in enumerate(kinds)], dim=1)


@register_method("gradient_shap", signed=True, display_name="GradientSHAP",
                 budget="n_samples", minimums={"n_samples": 1},
                 cost=lambda p, n, s: (0, n * p["n_samples"], True))
def gradient_shap(model: nn.Module, images: torch.Tensor, target: torch.Tensor, *,
                  n_samples: int = 32, stdevs: float = 0.0,
                  baselines: str | float | list | tuple = DEFAULT_BASELINES,
                  reduction: str = "sum", seed: int = 0,
                  image_seeds: torch.Tensor | None = None,
                  internal_batch_size: int | None = None) -> Explanation:
    """GradientSHAP maps [B, H, W] (channel-reduced, signed by default).

    n_samples: draws (= forward+backward passes) per image.
    stdevs:    standard deviation of the Gaussian noise added to the image, in [0, 1] units.
    baselines: the baseline distribution: a list of IG baselines (see module docstring).
    reduction: "sum" (signed) | "abs" | "l2" | "max" over the colour channels.
    seed / image_seeds: the draws' seed for every image, or one per image.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise UserError(f"n_samples must be a positive int, got {n_samples!r}")
    if isinstance(stdevs, bool) or not isinstance(stdevs, int | float) or not stdevs >= 0:
        raise UserError(f"stdevs must be a number >= 0, got {stdevs!r}")
    if reduction not in REDUCTIONS:
        raise UserError(f"unknown reduction '{reduction}'; accepted: {', '.join(REDUCTIONS)}")
    batch = images.shape[0]
    seeds = _seeds_per_image(seed, image_seeds, batch)
    bases = baseline_distribution(images, baselines, seed)
    index, alpha, noise = gradient_shap_draws(n_samples, bases.shape[1], float(stdevs),
                                              tuple(images.shape[1:]), seeds)
    index, alpha = index.to(images.device), alpha.to(images)
    noise = None if noise is None else noise.to(images)
    chunk = inputs_per_pass(images, internal_batch_size, AUTO_INPUTS_CPU, AUTO_INPUTS_CUDA)

    total = torch.zeros_like(images)
    for start in range(0, batch * n_samples, chunk):
        points = torch.arange(start, min(start + chunk, batch * n_samples), device=images.device)
        i, k = points // n_samples, points % n_samples
        noisy = images[i] if noise is None else images[i] + noise[i, k]
        base = bases[i, index[i, k]]
        a = alpha[i, k].view(-1, 1, 1, 1)
        inputs = (a * noisy + (1 - a) * base).requires_grad_(True)  # captum's _scale_input
        with torch.enable_grad():
            scores = model(inputs).gather(1, target[i].view(-1, 1))
            (grads,) = torch.autograd.grad(scores.sum(), inputs)
        total.index_add_(0, i, (noisy - base) * grads)
    kinds = [baselines] if isinstance(baselines, str | int | float) else list(baselines)
    params = {"n_samples": n_samples, "stdevs": float(stdevs),
              "baselines": [k if isinstance(k, str | int | float) else "tensor" for k in kinds],
              "reduction": reduction, "seed": seed, "image_seeds": image_seeds is not None}
    return Explanation(reduce_channels(total / n_samples, reduction).detach(), params=params)
