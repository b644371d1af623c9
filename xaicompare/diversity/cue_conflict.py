"""Texture reliance on the cue-conflict split (after Geirhos et al., 2019).

In the cue-conflict train split of the shapes benchmark the object's texture predicts the
class (texture = label mod T, 90% of images); in the test split textures are random, so most
test images pit the shape (the label) against the texture (the classes that texture was cued
with). A model that took the texture shortcut follows the texture on those images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def cued_classes(texture: np.ndarray, n_classes: int, n_textures: int) -> np.ndarray:
    """bool [N, K]: class k is cued by texture t when k mod T == t."""
    classes = np.arange(n_classes)
    return (classes[None, :] % n_textures) == np.asarray(texture)[:, None]


def texture_reliance(predictions: np.ndarray, labels: np.ndarray, texture: np.ndarray,
                     n_classes: int, n_textures: int, names: list[str]) -> pd.DataFrame:
    """Per model: accuracy on cue-consistent and cue-conflicting images, and on the
    conflicting ones the share of shape decisions (= label), texture decisions (a class the
    texture was cued with) and other errors, with shape bias = shape / (shape + texture)
    and the texture decisions a texture-blind model with the same accuracy would make (its
    errors spread uniformly over the other classes).

    predictions: int [M, N]; labels, texture: int [N].
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    cued = cued_classes(texture, n_classes, n_textures)
    conflict = ~cued[np.arange(len(labels)), labels]  # the texture does not cue the label
    # Share of a wrong answer's K-1 classes that the texture cues: a texture-blind model
    # that errs uniformly makes texture decisions at this rate per error.
    per_error = float(np.mean(cued.sum(1)[conflict] / (n_classes - 1))) if conflict.any() \
        else np.nan
    rows = []
    for name, pred in zip(names, predictions, strict=True):
        shape = pred == labels
        follows = cued[np.arange(len(pred)), pred] & ~shape
        shape_c, texture_c = shape[conflict].mean(), follows[conflict].mean()
        decided = shape_c + texture_c
        rows.append({"model": name,
                     "accuracy_consistent": float(shape[~conflict].mean())
                     if (~conflict).any() else np.nan,
                     "accuracy_conflict": float(shape_c),
                     "texture_decisions": float(texture_c),
                     "texture_decisions_chance": float((1 - shape_c) * per_error),
                     "other_errors": float(1 - decided),
                     "shape_bias": float(shape_c / decided) if decided > 0 else np.nan,
                     "n_conflict": int(conflict.sum()), "n_consistent": int((~conflict).sum())})
    return pd.DataFrame(rows)
