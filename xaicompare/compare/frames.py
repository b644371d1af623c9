"""Labelled square matrices (models x models) as pandas DataFrames: checks shared by
compare (reading CSVs) and cluster (linkage, communities)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import UserError


def check_square_frame(
    df,
    name: str = "matrix",
    *,
    symmetric: bool = True,
    zero_diagonal: bool = False,
    non_negative: bool = False,
    atol: float = 1e-8,
    names=None,
) -> pd.DataFrame:
    """Validate a labelled square matrix; returns it as float64 with columns in index order.

    Rows and columns must carry the same labels (any order; columns are reordered to rows).
    A NumPy array (or torch tensor) is accepted too, labelled by `names` (default "0",
    "1", ...); `names` relabels nothing when a DataFrame is given.
    """
    if not isinstance(df, pd.DataFrame):
        df = _labelled(df, name, names)
    if df.shape[0] != df.shape[1] or df.shape[0] == 0:
        raise UserError(f"{name} must be square and non-empty, got shape {df.shape}")
    rows, cols = [str(x) for x in df.index], [str(x) for x in df.columns]
    if len(set(rows)) != len(rows):
        raise UserError(
            f"{name} has duplicate row labels: {sorted({r for r in rows if rows.count(r) > 1})}"
        )
    if set(rows) != set(cols):
        raise UserError(
            f"{name} row and column labels differ: only in rows {sorted(set(rows) - set(cols))}, "
            f"only in columns {sorted(set(cols) - set(rows))}"
        )
    df = df.copy()
    df.index, df.columns = rows, cols
    df = df.loc[rows, rows]
    try:
        values = df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise UserError(f"{name} must hold numbers only: {err}") from None
    if not np.isfinite(values).all():
        bad = [(rows[i], rows[j]) for i, j in zip(*np.nonzero(~np.isfinite(values)), strict=True)]
        raise UserError(f"{name} has non-finite entries at {bad[:5]}")
    if symmetric and not np.allclose(values, values.T, atol=atol, rtol=0):
        i, j = np.unravel_index(np.argmax(np.abs(values - values.T)), values.shape)
        raise UserError(
            f"{name} is not symmetric: [{rows[i]}, {rows[j]}]={values[i, j]:g} but "
            f"[{rows[j]}, {rows[i]}]={values[j, i]:g}"
        )
    if zero_diagonal and not np.allclose(np.diag(values), 0, atol=atol, rtol=0):
        i = int(np.argmax(np.abs(np.diag(values))))
        raise UserError(
            f"{name} must have a zero diagonal, but [{rows[i]}, {rows[i]}]={values[i, i]:g}"
        )
    if non_negative and (values < -atol).any():
        i, j = np.unravel_index(np.argmin(values), values.shape)
        raise UserError(f"{name} must be non-negative, but [{rows[i]}, {rows[j]}]={values[i, j]:g}")
    return pd.DataFrame(values, index=rows, columns=rows)


def _labelled(values, name: str, names) -> pd.DataFrame:
    """A 2-D array as a DataFrame whose rows and columns are `names`."""
    if hasattr(values, "detach"):  # torch
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 2:
        raise UserError(f"{name} must be a models x models matrix: a pandas DataFrame, or a "
                        f"2-D NumPy array with names=; got {type(values).__name__}")
    labels = [str(i) for i in range(len(array))] if names is None else [str(x) for x in names]
    if len(labels) != array.shape[0]:
        raise UserError(f"{name}: {len(labels)} names for a matrix of shape {array.shape}")
    return pd.DataFrame(array, index=labels, columns=labels[: array.shape[1]]
                        if array.shape[0] == array.shape[1] else None)
