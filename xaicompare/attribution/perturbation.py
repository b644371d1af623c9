"""Perturbation attributions that need no gradient: Occlusion and RISE.

Occlusion (Zeiler & Fergus 2014), as captum's `Occlusion` computes it: a window of
`window` pixels (all channels) slides with `stride`, starting at 0 and stepping until the
whole image is covered (the last window may hang over the edge and is cut there); each
window is replaced by the baseline, and every pixel gets the mean of F(x) - F(occluded) over
the windows that cover it.

RISE (Petsiuk et al. 2018): `n_masks` random binary grids of `grid` x `grid` cells, each cell
kept with probability `p`, upsampled bilinearly to (grid + 1) cells of the image's size and
shifted by a random offset of up to one cell; the map is sum_i F(x * M_i) M_i / (n_masks p).
The masks of an image come from its own seed, so every model of a study sees the same masks.

Both evaluate every perturbed copy of a batch in forward passes of `internal_batch_size`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .baselines import make_baseline
from .kernelshap import _seeds_per_image
from .passes import inputs_per_pass
from .registry import Explanation, register_method

AUTO_INPUTS_CPU = 64  # forward-only inputs per pass when internal_batch_size is None
AUTO_INPUTS_CUDA = 256


def _chunk(images: torch.Tensor, internal_batch_size: int | None) -> int:
    return inputs_per_pass(images, internal_batch_size, AUTO_INPUTS_CPU, AUTO_INPUTS_CUDA,
                           backward=False)


def _pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(pair, tuple | list) or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair)):
        raise UserError(f"{name} must be a positive int or (height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


def occlusion_windows(height: int, width: int, window: tuple[int, int],
                      stride: tuple[int, int]) -> torch.Tensor:
    """Window masks [W, H, W] (1 = occluded) at captum's positions."""
    if window[0] > height or window[1] > width:
        raise UserError(f"occlusion window {window} is larger than the image {(height, width)}")
    if any(s > w for s, w, d in zip(stride, window, (height, width), strict=True) if w < d):
        raise UserError(f"occlusion stride {stride} must not exceed the window {window}")
    starts = [range(0, (math.ceil((d - w) / s) + 1) * s, s)
              for d, w, s in zip((height, width), window, stride, strict=True)]
    masks = torch.zeros(len(starts[0]) * len(starts[1]), height, width)
    for k, (top, left) in enumerate((t, lft) for t in starts[0] for lft in starts[1]):
        masks[k, top:top + window[0], left:left + window[1]] = 1
    return masks


def _scores(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
            chunk: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(part).gather(1, t.view(-1, 1)).squeeze(1).float()
                          for part, t in zip(inputs.split(chunk), target.split(chunk),
                                             strict=True)])


def _occlusion_cost(p: dict, n: int, size: int) -> tuple[int, int, bool]:
    window = p.get("window") or max(1, size // 8)
    stride = p.get("stride") or max(1, size // 16)
    window, stride = (window if isinstance(window, int) else window[0],
                      stride if isinstance(stride, int) else stride[0])
    per_side = math.ceil((size - window) / stride) + 1
    return n * (1 + per_side * per_side), 0, True


@register_method("occlusion", signed=True, display_name="Occlusion", family="perturbation",
                 cost=_occlusion_cost)
def occlusion(model: nn.Module, images: torch.Tensor, target: torch.Tensor, *,
              window: int | tuple[int, int] | None = None,
              stride: int | tuple[int, int] | None = None,
              baseline: str | float = "black", internal_batch_size: int | None = None
              ) -> Explanation:
    """Occlusion maps [B, H, W]: mean drop of the target score over the windows covering
    each pixel (signed: a negative value means occluding there raised the score).

    window / stride: pixels, or None for 1/8 / 1/16 of the image side (15 x 15 = 225
    windows at any size; captum's tutorials use 15 / 8 at 224 px, 729 windows).
    """
    batch, _, height, width = images.shape
    window = _pair(window if window is not None else (max(1, height // 8),
                                                      max(1, width // 8)), "window")
    stride = _pair(stride if stride is not None else (max(1, height // 16),
                                                      max(1, width // 16)), "stride")
    masks = occlusion_windows(height, width, window, stride).to(images)  # [W, H, W]
    base = make_baseline(images, baseline)
    chunk = _chunk(images, internal_batch_size)
    full = _scores(model, images, target, chunk)
    maps = torch.empty(batch, height, width, device=images.device)
    coverage = masks.sum(0)
    for b in range(batch):  # all windows of one image in chunked passes
        m = masks[:, None]
        occluded = images[b] * (1 - m) + base[b] * m
        drop = full[b] - _scores(model, occluded, target[b].expand(len(masks)), chunk)
        maps[b] = torch.einsum("k,khw->hw", drop.to(masks), masks) / coverage
    params = {"window": list(window), "stride": list(stride), "n_windows": len(masks),
              "baseline": baseline if isinstance(baseline, str | float | int) else "tensor"}
    return Explanation(maps, params=params)


def rise_masks(seed: int, n_masks: int, grid: int, p: float, height: int,
               width: int) -> torch.Tensor:
    """RISE masks [n_masks, H, W] in [0, 1] for one image, from its seed (on the CPU)."""
    generator = torch.Generator().manual_seed(seed)
    cells = (torch.rand(n_masks, 1, grid, grid, generator=generator) < p).float()
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    up = F.interpolate(cells, size=((grid + 1) * cell_h, (grid + 1) * cell_w),
                       mode="bilinear", align_corners=False)
    dy = torch.randint(0, cell_h, (n_masks,), generator=generator)
    dx = torch.randint(0, cell_w, (n_masks,), generator=generator)
    rows = dy[:, None] + torch.arange(height)  # [n, H]
    cols = dx[:, None] + torch.arange(width)  # [n, W]
    index = torch.arange(n_masks)[:, None, None]
    return up[:, 0][index, rows[:, :, None], cols[:, None, :]]


@register_method("rise", display_name="RISE", family="perturbation",
                 budget="n_masks", minimums={"n_masks": 1},
                 cost=lambda p, n, s: (n * p["n_masks"], 0, True))
def rise(model: nn.Module, images: torch.Tensor, target: torch.Tensor, *,
         n_masks: int = 1000, grid: int = 7, p: float = 0.5, seed: int = 0,
         image_seeds: torch.Tensor | None = None, internal_batch_size: int | None = None
         ) -> Explanation:
    """RISE maps [B, H, W] (non-negative for a non-negative score; see module docstring)."""
    if isinstance(n_masks, bool) or not isinstance(n_masks, int) or n_masks < 1:
        raise UserError(f"n_masks must be a positive int, got {n_masks!r}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise UserError(f"grid must be a positive int, got {grid!r}")
    if not isinstance(p, int | float) or not 0 < p <= 1:
        raise UserError(f"p must be in (0, 1], got {p!r}")
    batch, _, height, width = images.shape
    seeds = _seeds_per_image(seed, image_seeds, batch)
    chunk = _chunk(images, internal_batch_size)
    maps = torch.empty(batch, height, width, device=images.device)
    for b in range(batch):
        masks = rise_masks(seeds[b], n_masks, grid, p, height, width).to(images)
        scores = _scores(model, images[b] * masks[:, None], target[b].expand(n_masks), chunk)
        maps[b] = torch.einsum("k,khw->hw", scores.to(masks), masks) / (n_masks * p)
    params = {"n_masks": n_masks, "grid": grid, "p": float(p), "seed": seed,
              "image_seeds": image_seeds is not None}
    return Explanation(maps, params=params)
