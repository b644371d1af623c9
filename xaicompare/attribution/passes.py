"""Shared by the methods that evaluate many inputs: how many go into one forward(+backward)
pass, and how channel attributions become one map."""

from __future__ import annotations

import torch

from ..errors import UserError

REDUCTIONS = ("max", "sum", "abs", "l2")


def inputs_per_pass(images: torch.Tensor, internal_batch_size: int | None, cpu: int,
                    cuda: int) -> int:
    """`internal_batch_size`, or a budget (`cpu` / `cuda` inputs at 224 x 224) scaled by area."""
    if internal_batch_size is not None:
        if isinstance(internal_batch_size, bool) or internal_batch_size < 1:
            raise UserError(f"internal_batch_size must be >= 1 or None, got "
                            f"{internal_batch_size!r}")
        return int(internal_batch_size)
    budget = cuda if images.device.type == "cuda" else cpu
    area = images.shape[-2] * images.shape[-1] / (224 * 224)
    return max(1, int(budget / max(area, 1e-6)))


def reduce_channels(attributions: torch.Tensor, reduction: str) -> torch.Tensor:
    """[B, 3, H, W] -> [B, H, W]: max |.|, signed sum, sum of magnitudes, or L2 norm."""
    if reduction == "max":
        return attributions.abs().amax(dim=1)
    if reduction == "sum":
        return attributions.sum(dim=1)
    if reduction == "abs":
        return attributions.abs().sum(dim=1)
    if reduction == "l2":
        return attributions.norm(dim=1)
    raise UserError(f"unknown reduction '{reduction}'; accepted: {', '.join(REDUCTIONS)}")
