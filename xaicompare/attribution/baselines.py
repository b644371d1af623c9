"""Baselines for Integrated Gradients and KernelSHAP, built in the canonical frame.

Because they are built from the canonical images (not from a model's normalised input),
the baseline is the same picture for every model in a study.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError

BASELINES = ("black", "white", "blur", "noise", "mean")


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma)))
    coords = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    x = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, horizontal, groups=channels)
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(x, vertical, groups=channels)


def make_baseline(
    images: torch.Tensor,
    kind: str | float | torch.Tensor = "black",
    *,
    seed: int = 0,
    blur_sigma: float | None = None,
    mean_image: torch.Tensor | None = None,
) -> torch.Tensor:
    """A baseline shaped like `images` [B, 3, H, W].

    kind: "black" (zeros), "white" (ones), "blur" (Gaussian blur, sigma defaults to H/16),
          "noise" (uniform in [0, 1], one picture per seed), "mean" (the dataset mean colour,
          `mean_image` [3] or [3, H, W]; defaults to each image's own mean colour),
          a float (constant grey level) or a tensor broadcastable to `images`.
    """
    if isinstance(kind, torch.Tensor):
        return kind.to(images).expand_as(images).clone()
    if isinstance(kind, int | float) and not isinstance(kind, bool):
        return torch.full_like(images, float(kind))
    if kind == "black":
        return torch.zeros_like(images)
    if kind == "white":
        return torch.ones_like(images)
    if kind == "blur":
        sigma = blur_sigma if blur_sigma is not None else images.shape[-1] / 16
        return _gaussian_blur(images, sigma)
    if kind == "noise":
        # One noise picture per seed, shared by every image, so a map never depends on
        # the image's position in its batch.
        generator = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.rand((1, *images.shape[1:]), generator=generator, dtype=images.dtype)
        return noise.to(images.device).expand_as(images).clone()
    if kind == "mean":
        if mean_image is None:  # per-image mean colour: never depends on the batch
            return images.mean(dim=(2, 3), keepdim=True).expand_as(images).clone()
        mean_image = mean_image.to(images)
        if mean_image.ndim == 1:
            mean_image = mean_image.view(1, -1, 1, 1)
        return mean_image.expand_as(images).clone()
    raise UserError(
        f"unknown baseline '{kind}'; accepted: {', '.join(BASELINES)}, a float, or a tensor"
    )
