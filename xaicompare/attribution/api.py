"""`explain`: the one entry point for every attribution method."""

from __future__ import annotations

import torch

from ..errors import UserError
from .registry import METHODS, Attribution


def resolve_target(model, images: torch.Tensor, target) -> torch.Tensor:
    """Target classes as LongTensor [B]: None -> the model's predicted class."""
    batch = images.shape[0]
    if target is None:
        with torch.no_grad():
            return model(images).argmax(dim=1)
    if isinstance(target, int):
        return torch.full((batch,), target, dtype=torch.long, device=images.device)
    target = torch.as_tensor(target, dtype=torch.long, device=images.device).reshape(-1)
    if target.numel() != batch:
        raise UserError(f"target has {target.numel()} entries for {batch} images; "
                        "accepted: None (predicted class), an int, or one class per image")
    return target


def check_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise UserError(f"images must be a float tensor [B, 3, H, W] in [0, 1], got {shape}")
    if not images.is_floating_point():
        raise UserError(f"images must be floating point in [0, 1], got dtype {images.dtype}")
    return images


def explain_full(model, images, method: str = "gradcam", target=None, **params) -> Attribution:
    """Like `explain`, but returns the Attribution with its extras and resolved params."""
    fn = METHODS.get(method)
    images = check_images(images)
    target = resolve_target(model, images, target)
    return fn(model, images, target, **params)


def explain(model, images, method: str = "gradcam", target=None, **params) -> torch.Tensor:
    """Attribution maps [B, H, W] in the canonical frame of `images`.

    target: None (predicted class), an int, or a LongTensor [B].
    A map never depends on the other images in its batch.
    """
    return explain_full(model, images, method, target, **params).maps
