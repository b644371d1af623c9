"""Does an explanation point at the object? Scores against ground-truth object masks."""

from __future__ import annotations

import numpy as np

from ..errors import UserError


def localisation_scores(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Pointing game and attribution mass inside the mask, averaged over images.

    maps [N, H, W] (any sign), masks bool [N, H, W].
    pointing_game: share of images whose map maximum lies inside the mask (ties: the first
        maximum in row-major order); all-zero or non-finite maps count as misses.
    mass_in_mask: mean share of positive attribution inside the mask (images with no
        positive attribution are left out and counted in n_no_positive).
    mask_area: mean share of the image the object covers: the chance level of both scores
        for a map that ignores the object.
    """
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise UserError(f"maps and masks must both be [N, H, W]; got {maps.shape}, {masks.shape}")
    n = len(maps)
    flat, flat_masks = maps.reshape(n, -1), masks.reshape(n, -1)
    finite = np.isfinite(flat).all(1) & (np.nan_to_num(flat).max(1) > np.nan_to_num(flat).min(1))
    peak = np.nan_to_num(flat, nan=-np.inf).argmax(1)
    hits = flat_masks[np.arange(n), peak] & finite
    positive = np.clip(np.nan_to_num(flat), 0, None)
    total = positive.sum(1)
    has_positive = total > 0
    mass = (positive * flat_masks).sum(1)[has_positive] / total[has_positive]
    return {
        "pointing_game": float(hits.mean()) if n else float("nan"),
        "mass_in_mask": float(mass.mean()) if mass.size else float("nan"),
        "mask_area": float(flat_masks.mean()) if n else float("nan"),
        "n_images": int(n),
        "n_no_positive": int((~has_positive).sum()),
    }
