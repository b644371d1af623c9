"""The only file I/O in compare: labelled CSV matrices in, labelled CSV tables out."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..store import atomic_write
from .frames import check_square_frame

_PROVENANCE_PREFIX = "# xaicompare "


def read_matrix_csv(path, *, symmetric: bool = True) -> pd.DataFrame:
    """Read a labelled square matrix (first row and first column are model names).

    Leading '#' lines (as written by `write_table_csv`) are parsed into
    `df.attrs["provenance"]`. Raises UserError for non-square, mismatched labels,
    non-numeric or (with symmetric=True) asymmetric matrices.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"matrix CSV {str(path)!r} does not exist")
    lines = path.read_text().splitlines(keepends=True)
    provenance, body_start = {}, 0
    for line in lines:
        if not line.startswith("#"):
            break
        body_start += 1
        if line.startswith(_PROVENANCE_PREFIX):
            key, _, value = line[len(_PROVENANCE_PREFIX) :].strip().partition("=")
            provenance[key] = json.loads(value) if value else None
    try:
        df = pd.read_csv(io.StringIO("".join(lines[body_start:])), index_col=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"cannot read matrix CSV {str(path)!r}: {err}") from None
    df = check_square_frame(df, f"matrix CSV {str(path)!r}", symmetric=symmetric)
    df.attrs["provenance"] = provenance
    return df


def write_table_csv(df: pd.DataFrame, path, provenance: dict) -> Path:
    """Write a labelled table with its provenance as '# xaicompare key=<json>' header lines.

    provenance should name at least: method, metric, normalization, resolution, filter,
    n_images (e.g. SimilarityResult.provenance() plus the attribution method).
    """
    if not isinstance(df, pd.DataFrame):
        raise UserError(f"write_table_csv needs a DataFrame, got {type(df).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "".join(
        f"{_PROVENANCE_PREFIX}{key}={json.dumps(value, default=str)}\n"
        for key, value in provenance.items()
    )
    text = header + df.to_csv()
    atomic_write(path, lambda handle: handle.write(text.encode()))  # complete or absent
    return path
