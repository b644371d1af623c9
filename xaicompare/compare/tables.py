"""The only file I/O in compare: labelled CSV matrices in, labelled CSV tables out.

A table is plain CSV (`pd.read_csv(path)` reads it as is); its provenance (method,
metric, normalisation, images, ...) is a JSON sidecar beside it, `<name>.csv.json`.
Run folders written before the sidecar carried the provenance as leading
'# xaicompare key=<json>' lines; the readers here still accept them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..store import atomic_write
from .frames import check_square_frame

_PROVENANCE_PREFIX = "# xaicompare "  # old run folders: provenance inside the CSV


def sidecar_path(path) -> Path:
    """Where the provenance of the table at `path` lives: `<path>.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def table_provenance(path) -> dict:
    """The provenance of a table written by `write_table_csv` ({} when there is none)."""
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        return json.loads(sidecar.read_text())["provenance"]
    return _split_old_header(Path(path).read_text().splitlines(keepends=True))[0]


def _split_old_header(lines: list[str]) -> tuple[dict, int]:
    """(provenance, number of leading '#' lines) of an old-style table."""
    provenance, body_start = {}, 0
    for line in lines:
        if not line.startswith("#"):
            break
        body_start += 1
        if line.startswith(_PROVENANCE_PREFIX):
            key, _, value = line[len(_PROVENANCE_PREFIX) :].strip().partition("=")
            provenance[key] = json.loads(value) if value else None
    return provenance, body_start


def read_table_csv(path, **read_csv_kwargs) -> pd.DataFrame:
    """A table written by `write_table_csv`, its provenance in `df.attrs["provenance"]`.

    Same as `pd.read_csv(path, **read_csv_kwargs)` for a current table; an old one's
    leading '#' provenance lines are skipped and parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"table CSV {str(path)!r} does not exist")
    lines = path.read_text().splitlines(keepends=True)
    provenance, body_start = _split_old_header(lines)
    try:
        df = pd.read_csv(io.StringIO("".join(lines[body_start:])), **read_csv_kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"cannot read table CSV {str(path)!r}: {err}") from None
    if sidecar_path(path).is_file():
        provenance = table_provenance(path)
    df.attrs["provenance"] = provenance
    return df


def read_matrix_csv(path, *, symmetric: bool = True) -> pd.DataFrame:
    """Read a labelled square matrix (first row and first column are model names).

    The provenance (sidecar JSON, or an old table's '#' lines) is in
    `df.attrs["provenance"]`. Raises UserError for non-square, mismatched labels,
    non-numeric or (with symmetric=True) asymmetric matrices.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"matrix CSV {str(path)!r} does not exist")
    df = read_table_csv(path, index_col=0)
    provenance = df.attrs["provenance"]
    df = check_square_frame(df, f"matrix CSV {str(path)!r}", symmetric=symmetric)
    df.attrs["provenance"] = provenance
    return df


def write_table_csv(df: pd.DataFrame, path, provenance: dict) -> Path:
    """Write a labelled table as plain CSV and its provenance to `<path>.json`.

    provenance should name at least: method, metric, normalization, resolution, filter,
    n_images (e.g. SimilarityResult.provenance() plus the attribution method).
    """
    if not isinstance(df, pd.DataFrame):
        raise UserError(f"write_table_csv needs a DataFrame, got {type(df).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from .. import __version__

    sidecar = json.dumps({"table": path.name, "written_by": f"xaicompare {__version__}",
                          "provenance": provenance}, indent=2, default=str)
    text = df.to_csv()
    # sidecar first: a table on disk always has its provenance (each file complete or absent)
    atomic_write(sidecar_path(path), lambda handle: handle.write(sidecar.encode()))
    atomic_write(path, lambda handle: handle.write(text.encode()))
    return path
