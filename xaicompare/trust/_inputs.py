"""Input checks shared by the trust functions: per-image matrices and model names."""

from __future__ import annotations

import numpy as np
import torch

from ..compare.matrix import model_names  # noqa: F401  (re-exported for trust modules)
from ..errors import UserError


def per_image_matrix(per_image, names=None) -> tuple[np.ndarray, list[str], list[str]]:
    """float64 [M, K, N] and (row names, column names).

    Accepts a compare.SimilarityResult (names from it) or an array/tensor [M, K, N]
    (names=None: model0, model1, ...; or one list for square matrices; or (rows, cols)).
    """
    if hasattr(per_image, "per_image") and hasattr(per_image, "rows"):
        if names is not None:
            raise UserError("a SimilarityResult carries its names; do not pass names= as well")
        rows, cols = list(per_image.rows), list(per_image.cols)
        values = np.asarray(per_image.per_image, dtype=np.float64)
        return values, rows, cols
    if isinstance(per_image, torch.Tensor):
        per_image = per_image.detach().cpu().numpy()
    values = np.asarray(per_image, dtype=np.float64)
    if values.ndim != 3 or values.shape[-1] == 0:
        raise UserError(
            f"per_image must be [M, K, N] (models x models x images, N >= 1), got shape "
            f"{values.shape}"
        )
    m, k, _ = values.shape
    if isinstance(names, tuple) and len(names) == 2 and not isinstance(names[0], str):
        rows, cols = model_names(names[0], m, "row"), model_names(names[1], k, "column")
    else:
        if names is not None and m != k:
            raise UserError(f"per_image is {m} x {k}: pass names=(row names, column names)")
        rows = model_names(names, m)
        cols = rows if m == k else model_names(None, k, "column")
    return values, rows, cols


def check_square(values: np.ndarray, rows, cols, what: str) -> None:
    if rows != cols:
        raise UserError(f"{what} needs the same models in rows and columns (a square matrix)")
