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


def require_square(D: object, name: str) -> pd.DataFrame:
    """A models x models DataFrame whose index and columns name the same models in one order."""
    D = require_frame(D, name)
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
