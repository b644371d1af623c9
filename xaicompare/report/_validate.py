"""Input checks shared by the figure functions: one clear UserError per bad argument."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import UserError


def require_frame(obj: object, name: str, columns: Sequence[str] = ()) -> pd.DataFrame:
    """`obj` as a non-empty DataFrame that has every column in `columns`."""
    if not isinstance(obj, pd.DataFrame):
        raise UserError(f"{name} must be a pandas DataFrame, got {type(obj).__name__}")
    if obj.empty:
        raise UserError(f"{name} is empty; it needs at least one row")
    missing = [c for c in columns if c not in obj.columns]
    if missing:
        raise UserError(
            f"{name} lacks column(s) {missing}; it has {list(map(str, obj.columns))}, "
            f"needs {list(columns)}"
        )
    return obj


def as_frame(data: object, name: str, labels: Sequence[str] | None = None,
             columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A DataFrame as it is, or a 2-D NumPy array (or nested list) labelled by `labels` (rows,
    and columns unless `columns` is given) or by position 0..n-1."""
    if isinstance(data, pd.DataFrame) or data is None:
        return require_frame(data, name)
    try:
        values = np.asarray(data, dtype=float)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a DataFrame or a 2-D array of numbers, got "
                        f"{type(data).__name__}") from None
    if values.ndim != 2:
        raise UserError(f"{name} must be 2-D (rows x columns), got shape {values.shape}")
    rows = list(labels) if labels is not None else list(range(values.shape[0]))
    cols = list(columns) if columns is not None else (
        rows if labels is not None and values.shape[0] == values.shape[1]
        else list(range(values.shape[1])))
    if len(rows) != values.shape[0] or len(cols) != values.shape[1]:
        raise UserError(f"{name} has shape {values.shape} but {len(rows)} row and {len(cols)} "
                        "column labels were given")
    return require_frame(pd.DataFrame(values, index=rows, columns=cols), name)


def require_square(D: object, name: str, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """A models x models DataFrame whose index and columns name the same models in one order
    (a square NumPy array is labelled by `labels`, or 0..n-1)."""
    D = as_frame(D, name, labels)
    if D.shape[0] != D.shape[1] or list(D.index) != list(D.columns):
        raise UserError(
            f"{name} must be square with the same labels on index and columns; got index "
            f"{list(D.index)[:6]}... and columns {list(D.columns)[:6]}..."
        )
    if D.index.has_duplicates:
        raise UserError(f"{name} has duplicate labels: {list(D.index[D.index.duplicated()])}")
    values = D.to_numpy()
    if not np.issubdtype(values.dtype, np.number):
        raise UserError(f"{name} must hold numbers, got dtype {values.dtype}")
    return D


def require_order(order: Sequence[str] | None, labels: Sequence[str], name: str) -> list:
    """`order` if it is a permutation of `labels`, else the labels as given."""
    if order is None:
        return list(labels)
    order = list(order)
    if sorted(map(str, order)) != sorted(map(str, labels)) or len(set(order)) != len(order):
        raise UserError(
            f"{name} must list every label exactly once; got {order}, labels are {list(labels)}"
        )
    return order


def require_numeric_columns(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    for column in columns:
        if not pd.api.types.is_numeric_dtype(table[column]):
            raise UserError(
                f"{name} column '{column}' must be numeric, got dtype {table[column].dtype}"
            )
