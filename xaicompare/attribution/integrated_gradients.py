"""Integrated Gradients (Sundararajan et al., 2017), batched over images x steps.

attr_i = (x_i - x'_i) * sum_k w_k dF(x' + a_k (x - x'))/dx_i

All (image, step) pairs are flattened into one list and evaluated in chunks of
`internal_batch_size` points, so a batch of 4 images x 32 steps costs the same as 128
independent forward+backward passes at the best batch size, with no Python loop over images.
Gradients are taken w.r.t. the interpolated inputs only (`torch.autograd.grad`), never the
parameters.

Quadrature (`quadrature=`, captum's `method` names): "riemann_left", "riemann_right", "riemann_middle",
"riemann_trapezoid", "gausslegendre". Alphas and weights equal captum's, except
"riemann_trapezoid": captum weights its n points spaced 1/(n-1) apart by 1/n (halved at the
ends), which sums to (n-1)/n and shrinks every attribution by that factor; here the weights
are the true trapezoid rule, 1/(n-1) halved at the ends, so they sum to 1.

Default "gausslegendre" (captum's default), chosen by `benchmarks/ig_quadrature.py`: over 22
small timm models (CNNs, ViTs, BEiT, EVA, CaiT, Swin, PVT, MobileViT, Mixer, ResMLP,
PoolFormer; random weights, black baseline) at n_steps=32 its median relative completeness
error is 1e-5 against 2e-3 (riemann_middle) and 4e-3 (riemann_trapezoid). The rules that
evaluate the path's ends (trapezoid, left) explode where the gradient at the baseline does:
MobileViT (mean 0 / std 1, so black is an all-zero input) gives errors of 1e8-1e25 with
them. On piecewise-linear (ReLU) CNNs, riemann_middle is often closer at equal steps.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from .baselines import make_baseline
from .passes import inputs_per_pass, reduce_channels
from .registry import Explanation, register_method

QUADRATURES = (
    "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right", "gausslegendre",
)
REDUCTIONS = ("sum", "abs", "l2")
# Points per chunk when internal_batch_size is None: large enough to keep the device busy,
# small enough for the activations of a 224-px ResNet-50 / ViT-B backward on a laptop.
AUTO_POINTS_CPU = 32
AUTO_POINTS_CUDA = 128


def quadrature_rule(method: str, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(alphas [n], weights [n]) in float64 for integrating over alpha in [0, 1]."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        return torch.from_numpy(0.5 * (nodes + 1)), torch.from_numpy(0.5 * weights)
    if method not in QUADRATURES:
        raise UserError(
            f"unknown IG method '{method}'; accepted: {', '.join(QUADRATURES)}"
        )
    n = n_steps
    if method == "riemann_trapezoid":
        if n < 2:
            raise UserError(f"riemann_trapezoid needs n_steps >= 2, got {n}")
        weights = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        weights[[0, -1]] /= 2
        return torch.linspace(0, 1, n, dtype=torch.float64), weights
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[method]
    return (torch.arange(n, dtype=torch.float64) + offset) / n, weights


def _target_scores(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return model(inputs).gather(1, target.view(-1, 1)).squeeze(1)


def path_gradients(
    model: nn.Module, images: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor,
    alphas: torch.Tensor, weights: torch.Tensor, chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_k w_k grad F at step k [B, 3, H, W], F at every step [B, n]).

    Image-major flattening: point p is image p // n, step p % n.
    """
    batch, n = images.shape[0], alphas.numel()
    alphas, weights = alphas.to(images), weights.to(images)
    diff = images - baseline
    total = torch.zeros_like(images)
    scores = images.new_empty(batch * n)
    for start in range(0, batch * n, chunk):
        points = torch.arange(start, min(start + chunk, batch * n), device=images.device)
        image_idx, step_idx = points // n, points % n
        alpha = alphas[step_idx].view(-1, 1, 1, 1)
        inputs = (baseline[image_idx] + alpha * diff[image_idx]).requires_grad_(True)
        with torch.enable_grad():
            out = _target_scores(model, inputs, target[image_idx])
            (grad,) = torch.autograd.grad(out.sum(), inputs)
        scores[points] = out.detach().to(scores.dtype)  # a user autocast may give bf16
        total.index_add_(0, image_idx, grad * weights[step_idx].view(-1, 1, 1, 1))
    return total, scores.view(batch, n)


def _cost(p: dict, n: int, size: int) -> tuple[int, int, bool]:
    ends = 0 if p["quadrature"] in ("riemann_trapezoid",) else 2  # F(x) and F(x') after
    return n * ends, n * p["n_steps"], True


@register_method("integrated_gradients", signed=True, display_name="Integrated Gradients",
                 budget="n_steps", minimums={"n_steps": 1}, cost=_cost)
def integrated_gradients(
    model: nn.Module,
    images: torch.Tensor,
    target: torch.Tensor,
    *,
    n_steps: int = 32,
    baseline: str | float | torch.Tensor = "black",
    quadrature: str = "gausslegendre",
    reduction: str = "sum",
    internal_batch_size: int | None = None,
    seed: int = 0,
) -> Explanation:
    """Integrated Gradients maps [B, H, W] (channel-reduced) in the canonical frame.

    n_steps:  points on the straight path from the baseline to the image
    baseline: "black" | "white" | "blur" | "noise" | "mean" | a float | a tensor (see
              `make_baseline`); `seed` picks the noise picture
    quadrature: the rule, captum's `method` names (see module docstring); not called
              `method` because `explain(..., method=...)` names the attribution method
    reduction: "sum" (signed, default) | "abs" | "l2" over the colour channels
    internal_batch_size: (image, step) points per forward+backward; None picks one

    extras: "delta" [B] = sum of the per-channel attributions - (F(x) - F(x')), captum's
    convergence delta; "completeness_gap" [B] = |delta|. (Both use the signed attributions,
    whatever the map's `reduction`.)
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise UserError(f"n_steps must be a positive int, got {n_steps!r}")
    if reduction not in REDUCTIONS:
        raise UserError(f"unknown reduction '{reduction}'; accepted: {', '.join(REDUCTIONS)}")
    if internal_batch_size is not None and internal_batch_size < 1:
        raise UserError(f"internal_batch_size must be >= 1 or None, got {internal_batch_size}")
    alphas, weights = quadrature_rule(quadrature, n_steps)
    chunk = inputs_per_pass(images, internal_batch_size, AUTO_POINTS_CPU, AUTO_POINTS_CUDA)
    base = make_baseline(images, baseline, seed=seed)

    total, scores = path_gradients(model, images, base, target, alphas, weights, chunk)
    attributions = total * (images - base)
    if alphas[0] == 0 and alphas[-1] == 1:  # the path's ends were already evaluated
        f_image, f_base = scores[:, -1], scores[:, 0]
    else:
        with torch.no_grad():
            ends = torch.cat([images, base])
            f_ends = torch.cat([
                _target_scores(model, part, t)
                for part, t in zip(ends.split(chunk), target.repeat(2).split(chunk), strict=True)
            ])
        f_image, f_base = f_ends[: len(images)], f_ends[len(images):]
    delta = attributions.flatten(1).sum(dim=1) - (f_image - f_base)

    maps = reduce_channels(attributions, reduction)
    params = {
        "n_steps": n_steps,
        "baseline": baseline if isinstance(baseline, str | float | int) else "tensor",
        "quadrature": quadrature, "reduction": reduction, "seed": seed,
    }
    extras = {"delta": delta, "completeness_gap": delta.abs()}
    return Explanation(maps=maps.detach(), extras=extras, params=params)
