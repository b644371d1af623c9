"""Input checks shared by the diversity and trust functions (scikit-learn style): arrays in,
one clear UserError naming the input out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .errors import UserError

ArrayLike = Any  # numpy array, torch tensor or nested sequence


def as_numpy(x: ArrayLike, name: str, ndim: int | None = None) -> np.ndarray:
    """numpy view of an array or tensor (tensors are detached and moved to CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if ndim is not None and arr.ndim != ndim:
        raise UserError(f"{name} must have {ndim} dimensions, got shape {tuple(arr.shape)}")
    return arr


def as_correct(x: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """0/1 correctness as float64; accepts bool or {0, 1} numbers."""
    arr = as_numpy(x, name, ndim)
    if arr.dtype != bool:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise UserError(f"{name} must be boolean (or 0/1), got values outside {{0, 1}}")
    return arr.astype(np.float64)


def as_labels(labels: ArrayLike, n: int, n_classes: int | None = None) -> np.ndarray:
    arr = as_numpy(labels, "labels", 1)
    if arr.shape[0] != n:
        raise UserError(f"labels has {arr.shape[0]} entries but the scores have {n} rows")
    if not np.issubdtype(arr.dtype, np.integer):
        if arr.size and not np.all(np.mod(arr, 1) == 0):
            raise UserError("labels must be integer class indices")
        arr = arr.astype(np.int64)
    if n_classes is not None and arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise UserError(
            f"labels must lie in [0, {n_classes - 1}] (the score columns), "
            f"got min {arr.min()} and max {arr.max()}"
        )
    return arr


def check_names(names: Sequence[str] | None, m: int) -> list[str] | None:
    if names is None:
        return None
    names = [str(n) for n in names]
    if len(names) != m:
        raise UserError(f"got {len(names)} names for {m} models")
    if len(set(names)) != m:
        raise UserError(f"model names must be unique, got {names}")
    return names


def labelled(matrix: np.ndarray, names: Sequence[str] | None) -> np.ndarray | pd.DataFrame:
    """An M x M matrix as a DataFrame indexed by model name when names are given."""
    if names is None:
        return matrix
    return pd.DataFrame(matrix, index=list(names), columns=list(names))


def check_probs(probs: np.ndarray) -> None:
    """UserError unless `probs` [M, N, K] are softmax outputs (rows summing to 1)."""
    if probs.min() < 0 or not np.allclose(probs.sum(axis=2), 1.0, atol=1e-4):
        raise UserError(
            "probs must be softmax outputs [M, N, K]: non-negative, each row summing to 1 "
            "(apply softmax to logits first)"
        )
