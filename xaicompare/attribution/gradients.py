"""Plain-gradient attributions: Saliency, Input x Gradient, and SmoothGrad over either.

Saliency (Simonyan et al. 2014): |dF/dx|, reduced over colour channels (max, as in the
paper, by default). Input x Gradient (Shrikumar et al. 2016): x * dF/dx, summed over
channels (signed). SmoothGrad (Smilkov et al. 2017): the mean of a gradient method over
`n_samples` noisy copies x + N(0, (noise_level * (max x - min x))^2); the noise of an image
is drawn from its own seed, so every model of a study sees the same noisy copies.

All gradients of a batch (and all noisy copies) go through one chunked forward+backward
loop: `internal_batch_size` inputs per pass.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .kernelshap import _seeds_per_image
from .passes import REDUCTIONS, inputs_per_pass, reduce_channels
from .registry import Explanation, register_method

SMOOTHED = ("saliency", "input_x_gradient")
AUTO_INPUTS_CPU = 32  # inputs per pass when internal_batch_size is None
AUTO_INPUTS_CUDA = 128


def input_gradients(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                    chunk: int) -> torch.Tensor:
    """dF_target/dx for every input [N, 3, H, W], `chunk` inputs per forward+backward."""
    grads = torch.empty_like(inputs)
    for start in range(0, len(inputs), chunk):
        part = inputs[start:start + chunk].detach().requires_grad_(True)
        with torch.enable_grad():
            scores = model(part).gather(1, target[start:start + chunk].view(-1, 1))
            (grads[start:start + chunk],) = torch.autograd.grad(scores.sum(), part)
    return grads


def _chunk(images: torch.Tensor, internal_batch_size: int | None) -> int:
    return inputs_per_pass(images, internal_batch_size, AUTO_INPUTS_CPU, AUTO_INPUTS_CUDA)


def _raw(kind: str, inputs: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    return grads.abs() if kind == "saliency" else inputs * grads


@register_method("saliency", display_name="Saliency", cost=lambda p, n, s: (0, n, True))
def saliency(model: nn.Module, images: torch.Tensor, target: torch.Tensor, *,
             reduction: str = "max", internal_batch_size: int | None = None) -> Explanation:
    """|dF/dx| reduced over channels ("max" default; "sum"/"abs"/"l2" as for IG)."""
    if reduction not in REDUCTIONS:
        raise UserError(f"unknown reduction '{reduction}'; accepted: {', '.join(REDUCTIONS)}")
    grads = input_gradients(model, images, target, _chunk(images, internal_batch_size))
    return Explanation(reduce_channels(grads.abs(), reduction).detach(),
                       params={"reduction": reduction})


@register_method("input_x_gradient", signed=True, display_name="Input x Gradient",
                 cost=lambda p, n, s: (0, n, True))
def input_x_gradient(model: nn.Module, images: torch.Tensor, target: torch.Tensor, *,
                     reduction: str = "sum", internal_batch_size: int | None = None
                     ) -> Explanation:
    """x * dF/dx reduced over channels ("sum", signed, default)."""
    if reduction not in REDUCTIONS:
        raise UserError(f"unknown reduction '{reduction}'; accepted: {', '.join(REDUCTIONS)}")
    grads = input_gradients(model, images, target, _chunk(images, internal_batch_size))
    return Explanation(reduce_channels(images * grads, reduction).detach(),
                       params={"reduction": reduction})


def smoothgrad_noise(images: torch.Tensor, n_samples: int, noise_level: float,
                     seeds: list[int]) -> torch.Tensor:
    """Noise [B, n, 3, H, W]: N(0, sigma^2), sigma = noise_level x the image's value range,
    drawn on the CPU from each image's own seed (the same on every device and batch)."""
    out = []
    for image, seed in zip(images, seeds, strict=True):
        generator = torch.Generator().manual_seed(seed)
        sigma = noise_level * float(image.max() - image.min())
        out.append(torch.randn((n_samples, *image.shape), generator=generator) * sigma)
    return torch.stack(out).to(images)


@register_method("smoothgrad", signed=None, display_name="SmoothGrad",  # as its base
                 budget="n_samples", minimums={"n_samples": 1},
                 cost=lambda p, n, s: (0, n * p["n_samples"], True))
def smoothgrad(model: nn.Module, images: torch.Tensor, target: torch.Tensor, *,
               base: str = "saliency", n_samples: int = 25, noise_level: float = 0.15,
               reduction: str | None = None, seed: int = 0,
               image_seeds: torch.Tensor | None = None,
               internal_batch_size: int | None = None) -> Explanation:
    """SmoothGrad over `base` ("saliency" or "input_x_gradient").

    The base method's channel attributions are averaged over the noisy copies, then
    reduced (`reduction`: the base method's default when None). seed / image_seeds: the
    noise seed of every image, or one per image (a study passes one per image id).
    """
    if base not in SMOOTHED:
        raise UserError(f"smoothgrad base '{base}' is not accepted; accepted: "
                        f"{', '.join(SMOOTHED)}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise UserError(f"n_samples must be a positive int, got {n_samples!r}")
    if not isinstance(noise_level, int | float) or not noise_level >= 0:
        raise UserError(f"noise_level must be a number >= 0, got {noise_level!r}")
    reduction = reduction or ("max" if base == "saliency" else "sum")
    if reduction not in REDUCTIONS:
        raise UserError(f"unknown reduction '{reduction}'; accepted: {', '.join(REDUCTIONS)}")
    batch = images.shape[0]
    seeds = _seeds_per_image(seed, image_seeds, batch)
    noisy = (images[:, None] + smoothgrad_noise(images, n_samples, noise_level, seeds))
    noisy = noisy.reshape(-1, *images.shape[1:])
    grads = input_gradients(model, noisy, target.repeat_interleave(n_samples),
                            _chunk(images, internal_batch_size))
    mean = _raw(base, noisy, grads).reshape(batch, n_samples, *images.shape[1:]).mean(1)
    params = {"base": base, "n_samples": n_samples, "noise_level": float(noise_level),
              "reduction": reduction, "seed": seed, "image_seeds": image_seeds is not None}
    return Explanation(reduce_channels(mean, reduction).detach(), params=params)
