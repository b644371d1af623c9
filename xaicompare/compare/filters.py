"""Image filters: which images a comparison uses, from the models' predictions.

Each filter takes preds [M, N] (class per model and image) and labels [N] (or None) and
returns a bool mask, either [N] (same images for every pair) or [M, M, N] (per pair).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import UserError
from ..registry import Registry

FILTERS: Registry[Callable] = Registry("image filter")

# Filters whose mask is the same for every pair: images can be skipped before computing.
PER_IMAGE_FILTERS = {"all", "all_agree", "disagree"}


def _labels(labels, n: int) -> np.ndarray:
    if labels is None:
        raise UserError("this image filter needs labels [N]")
    labels = np.asarray(labels).reshape(-1)
    if labels.shape != (n,):
        raise UserError(f"labels must have one entry per image ({n}), got {labels.shape}")
    return labels


@FILTERS.register("all")
def all_images(preds: np.ndarray, labels=None) -> np.ndarray:
    return np.ones(preds.shape[1], dtype=bool)


@FILTERS.register("both_same_prediction")
def both_same_prediction(preds: np.ndarray, labels=None) -> np.ndarray:
    """[M, M, N]: models m and k predict the same class."""
    return preds[:, None, :] == preds[None, :, :]


@FILTERS.register("both_correct")
def both_correct(preds: np.ndarray, labels=None) -> np.ndarray:
    """[M, M, N]: models m and k are both right."""
    correct = preds == _labels(labels, preds.shape[1])[None]
    return correct[:, None, :] & correct[None, :, :]


@FILTERS.register("all_agree")
def all_agree(preds: np.ndarray, labels=None) -> np.ndarray:
    """[N]: every model predicts the same class."""
    return (preds == preds[:1]).all(axis=0)


@FILTERS.register("disagree")
def disagree(preds: np.ndarray, labels=None) -> np.ndarray:
    """[N]: at least two models predict different classes."""
    return ~all_agree(preds)


def image_filter(name: str, preds, labels=None) -> np.ndarray:
    """Mask for filter `name` ([N] or [M, M, N]); preds [M, N] class indices."""
    fn = FILTERS.get(name)
    if preds is None:
        if name == "all":
            return None
        raise UserError(f"image filter '{name}' needs preds [M, N] (predicted class per model)")
    preds = np.asarray(preds.cpu() if hasattr(preds, "cpu") else preds)
    if preds.ndim != 2:
        raise UserError(f"preds must be [M, N] (models x images), got shape {preds.shape}")
    return fn(preds, labels)
