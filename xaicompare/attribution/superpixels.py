"""Superpixels for KernelSHAP, computed once per image in the canonical frame.

SLIC runs on the canonical [0, 1] RGB picture (never on a model's normalised tensor), so
every model in a study is explained over the same features.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.segmentation import slic

from ..errors import UserError


def relabel_segments(segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relabel each image's segment ids to consecutive 0..M_b-1, keeping their sorted order.

    segments: integer tensor [B, H, W] (any ids, gaps allowed).
    Returns (LongTensor [B, H, W] on the same device, LongTensor [B] segments per image).
    """
    if not isinstance(segments, torch.Tensor) or segments.ndim != 3:
        shape = tuple(segments.shape) if hasattr(segments, "shape") else type(segments).__name__
        raise UserError(f"segments must be an integer tensor [B, H, W], got {shape}")
    if segments.is_floating_point() or segments.dtype == torch.bool:
        raise UserError(f"segments must hold integer ids, got dtype {segments.dtype}")
    relabelled = torch.empty(segments.shape, dtype=torch.long, device=segments.device)
    counts = torch.empty(segments.shape[0], dtype=torch.long)
    for b, image_segments in enumerate(segments):  # per image: ids are per-image anyway
        ids, inverse = torch.unique(image_segments, return_inverse=True)
        relabelled[b] = inverse
        counts[b] = ids.numel()
    return relabelled, counts


def compute_segments(
    images: torch.Tensor,
    n_segments: int = 50,
    compactness: float = 10.0,
    sigma: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SLIC superpixels of canonical images.

    images: float [B, 3, H, W] in [0, 1] (the canonical frame).
    Returns (LongTensor [B, H, W] with consecutive ids 0..M_b-1 per image, on the images'
    device, and LongTensor [B] with M_b). Deterministic: SLIC has no randomness.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise UserError(f"images must be a float tensor [B, 3, H, W] in [0, 1], got {shape}")
    if isinstance(n_segments, bool) or not isinstance(n_segments, int) or n_segments < 2:
        raise UserError(f"n_segments must be an int >= 2, got {n_segments!r}")
    if compactness <= 0:
        raise UserError(f"compactness must be > 0, got {compactness!r}")
    if sigma < 0:
        raise UserError(f"sigma must be >= 0, got {sigma!r}")
    pictures = images.detach().to("cpu", torch.float64).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    labels = np.stack([
        slic(picture, n_segments=n_segments, compactness=compactness, sigma=sigma,
             start_label=0, channel_axis=-1)
        for picture in pictures
    ])
    return relabel_segments(torch.from_numpy(labels).to(images.device))
