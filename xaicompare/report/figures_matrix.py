"""Heatmaps of model x model (or model x anything) matrices: dissimilarity, diversity, CIs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import QuadMesh
from matplotlib.colors import CenteredNorm, Normalize, TwoSlopeNorm
from matplotlib.patches import Patch, Rectangle

from ..errors import UserError
from . import names
from ._validate import as_frame, require_order, require_square
from .style import (
    SEQUENTIAL_CMAP,
    family_palette,
    family_sort_key,
    figure_and_axes,
    resolve_families,
    text_color_for,
)

ANNOTATE_UP_TO = 12  # more cells per side than this and numbers stop being readable


def _size_for(n_rows: int, n_cols: int) -> tuple[float, float]:
    side = 0.32
    return (max(3.3, 1.9 + side * n_cols), max(2.6, 1.4 + side * n_rows))


def cell_text(value: float, fmt: str) -> str:
    """`value` formatted, without the minus of a number that rounds to zero ("-0.00")."""
    text = format(value, fmt)
    if text.startswith("-") and not any(ch in "123456789" for ch in text):
        text = text[1:]
    return text


NAN_HATCH = "////"
NAN_LABEL = "undefined (NaN)"


def _draw_heatmap(
    ax: Axes,
    values: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    cmap: str,
    norm: Normalize,
    annot: bool | np.ndarray,
    fmt: str,
    cbar_label: str | None,
    cbar: bool,
    bad_color: str = "white",
    undefined: np.ndarray | None = None,
    square: bool = True,
    annot_kws: Mapping | None = None,
    cbar_kws: Mapping | None = None,
    **mesh_kws,
) -> QuadMesh:
    """pcolormesh (vector cells in PDF / SVG) with labelled ticks, rows top to bottom, NaN
    cells drawn as `bad_color`; `undefined` cells (NaN in the data, not a masked diagonal) are
    hatched grey and named in a legend; optional cell text."""
    colormap = matplotlib.colormaps[cmap].with_extremes(bad=bad_color)
    masked = np.ma.masked_invalid(values)
    n_rows, n_cols = values.shape
    linewidths = mesh_kws.pop("linewidths", mesh_kws.pop("linewidth", 0.0))
    linecolor = mesh_kws.pop("linecolor", mesh_kws.pop("edgecolors", "white"))
    mesh = ax.pcolormesh(np.arange(n_cols + 1) - 0.5, np.arange(n_rows + 1) - 0.5, masked,
                         cmap=colormap, norm=norm, linewidth=linewidths, edgecolors=linecolor,
                         **mesh_kws)
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(n_rows - 0.5, -0.5)  # first row on top, as a table reads
    if square:
        ax.set_aspect("equal")
    ax.set_xticks(range(n_cols), names.labels(col_labels), rotation=45, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(n_rows), names.labels(row_labels))
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if annot is not False and annot is not None:
        texts = annot if isinstance(annot, np.ndarray) else None
        kws = {"fontsize": "x-small", **(annot_kws or {})}
        for (i, j), value in np.ndenumerate(values):
            if not np.isfinite(value):
                continue
            text = texts[i, j] if texts is not None else cell_text(value, fmt)
            color = text_color_for(colormap(norm(value)))
            ax.text(j, i, text, ha="center", va="center", color=color, **kws)
    if cbar:
        bar = ax.figure.colorbar(mesh, ax=ax, **{"shrink": 0.8, "pad": 0.02, "aspect": 25,
                                                 **(cbar_kws or {})})
        if cbar_label:
            bar.set_label(cbar_label)
        bar.outline.set_visible(False)
    if undefined is not None and undefined.any():
        for i, j in zip(*np.nonzero(undefined), strict=True):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="none", hatch=NAN_HATCH,
                                   edgecolor="0.6", lw=0))
        handle = Patch(facecolor="white", edgecolor="0.6", hatch=NAN_HATCH, label=NAN_LABEL)
        # under the colour bar (clear of the rotated tick labels), else above the matrix
        host, anchor = ((bar.ax, (0.0, -0.02)) if cbar else (ax, (1.0, 1.0)))
        host.legend(handles=[handle], loc="upper left" if cbar else "lower right",
                    bbox_to_anchor=anchor, frameon=False, borderaxespad=0, handlelength=1.2,
                    fontsize="x-small")
    return mesh


def _norm_for(values: np.ndarray, vmin, vmax, center) -> Normalize:
    finite = values[np.isfinite(values)]
    lo = float(finite.min()) if vmin is None and finite.size else vmin
    hi = float(finite.max()) if vmax is None and finite.size else vmax
    lo = 0.0 if lo is None else lo
    hi = 1.0 if hi is None else hi
    if center is None:
        return Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-12)
    if vmin is None and vmax is None:
        return CenteredNorm(vcenter=center)
    if not lo < center < hi:  # TwoSlopeNorm needs the centre strictly inside the range
        half = max(abs(hi - center), abs(center - lo), 1e-12)
        lo, hi = center - half, center + half
    return TwoSlopeNorm(vcenter=center, vmin=lo, vmax=hi)


def _family_strips(ax: Axes, ordered: Sequence[str], fam: Mapping[str, str]) -> None:
    """Colour strips left of and above the matrix, one cell per model, coloured by family."""
    n = len(ordered)
    palette = family_palette(fam.values())
    thick, gap = max(0.45, 0.025 * n), max(0.12, 0.006 * n)
    for k, model in enumerate(ordered):
        color = palette[fam[model]]
        ax.add_patch(
            Rectangle((-0.5 - gap - thick, k - 0.5), thick, 1, color=color, clip_on=False, lw=0)
        )
        ax.add_patch(
            Rectangle((k - 0.5, -0.5 - gap - thick), 1, thick, color=color, clip_on=False, lw=0)
        )
    ax.set_xlim(-0.5 - gap - thick, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5 - gap - thick)
    for tick, model in zip(ax.get_yticklabels(), ordered, strict=True):
        tick.set_color(palette[fam[model]])
    for tick, model in zip(ax.get_xticklabels(), ordered, strict=True):
        tick.set_color(palette[fam[model]])
    handles = [Patch(color=palette[f], label=f) for f in sorted(palette, key=family_sort_key)]
    if ax.get_legend() is not None:  # keep the NaN legend drawn on the matrix itself
        ax.add_artist(ax.get_legend())
    ax.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        # at most two columns: wider than the matrix, the legend would make constrained
        # layout shrink an equal-aspect matrix a little more at every draw
        ncol=min(len(handles), 2),
        frameon=False,
        handlelength=1.0,
        columnspacing=1.0,
        borderaxespad=0.2,
    )


def plot_dissimilarity_heatmap(
    D: pd.DataFrame | np.ndarray,
    families: Mapping[str, str] | None = None,
    order: Sequence[str] | None = None,
    mask_diagonal: bool = True,
    annot: bool | None = None,
    *,
    labels: Sequence[str] | None = None,
    fmt: str = ".2f",
    cmap: str = SEQUENTIAL_CMAP,
    vmin: float | None = 0.0,
    vmax: float | None = None,
    cbar: bool = True,
    cbar_label: str = "dissimilarity",
    title: str | None = None,
    square: bool = True,
    annot_kws: Mapping | None = None,
    cbar_kws: Mapping | None = None,
    ax: Axes | None = None,
    **kwargs,
) -> Axes:
    """Models x models dissimilarity, reordered (e.g. by dendrogram leaves), family strips.

    D: a DataFrame, or a square NumPy array labelled by `labels` (default 0..n-1).
    `annot=None` writes the numbers when there are at most 12 models. The diagonal (always 0)
    is blanked by default so that the colour range is spent on the off-diagonal pairs; NaN
    entries are hatched and named in a legend. Further keywords (`linewidths`, `linecolor`,
    `rasterized`, ...) go to `Axes.pcolormesh`. Returns the Axes.
    """
    D = require_square(D, "D", labels)
    ordered = require_order(order, list(D.index), "order")
    D = D.loc[ordered, ordered]
    values = D.to_numpy(dtype=float).copy()
    undefined = ~np.isfinite(values)
    if mask_diagonal:
        np.fill_diagonal(values, np.nan)
        np.fill_diagonal(undefined, False)
    fig, ax = figure_and_axes(ax, *_size_for(len(ordered), len(ordered)))
    annot = len(ordered) <= ANNOTATE_UP_TO if annot is None else annot
    _draw_heatmap(
        ax,
        values,
        ordered,
        ordered,
        cmap=cmap,
        norm=_norm_for(values, vmin, vmax, None),
        annot=annot,
        fmt=fmt,
        cbar_label=cbar_label,
        cbar=cbar,
        undefined=undefined,
        square=square,
        annot_kws=annot_kws,
        cbar_kws=cbar_kws,
        **kwargs,
    )
    if families is not None:
        _family_strips(ax, ordered, resolve_families(ordered, families))
    if title:
        ax.set_title(names.title_text(title), pad=14 if families is not None else None)
    return ax


def plot_matrix_heatmap(
    M: pd.DataFrame | np.ndarray,
    title: str | None = None,
    cmap: str | None = None,
    center: float | None = None,
    ax: Axes | None = None,
    *,
    annot: bool | None = None,
    fmt: str = ".2f",
    vmin: float | None = None,
    vmax: float | None = None,
    cbar: bool = True,
    cbar_label: str | None = None,
    mask_diagonal: bool = False,
    xticklabels: Sequence[str] | None = None,
    yticklabels: Sequence[str] | None = None,
    square: bool = True,
    annot_kws: Mapping | None = None,
    cbar_kws: Mapping | None = None,
    **kwargs,
) -> Axes:
    """Any labelled matrix (error consistency, 0/1 diversity, accuracy per corruption...).

    M: a DataFrame or a 2-D NumPy array (labelled by `yticklabels` / `xticklabels`).
    With `center` the colormap is diverging (default RdBu_r) and centred on that value, so
    e.g. kappa = 0 (chance agreement) is white; otherwise sequential (viridis). NaN cells
    (e.g. kappa of a model that is never wrong) are hatched and named in a legend; a masked
    diagonal is left blank. Further keywords go to `Axes.pcolormesh`. Returns the Axes.
    """
    M = as_frame(M, "M", yticklabels, xticklabels)
    values = M.to_numpy(dtype=float).copy()
    undefined = ~np.isfinite(values)
    if mask_diagonal:
        if M.shape[0] != M.shape[1]:
            raise UserError(f"mask_diagonal needs a square matrix, got shape {M.shape}")
        np.fill_diagonal(values, np.nan)
        np.fill_diagonal(undefined, False)
    cmap = cmap or ("RdBu_r" if center is not None else SEQUENTIAL_CMAP)
    fig, ax = figure_and_axes(ax, *_size_for(*values.shape))
    annot = max(values.shape) <= ANNOTATE_UP_TO if annot is None else annot
    _draw_heatmap(
        ax,
        values,
        list(M.index),
        list(M.columns),
        cmap=cmap,
        norm=_norm_for(values, vmin, vmax, center),
        annot=annot,
        fmt=fmt,
        cbar_label=cbar_label,
        cbar=cbar,
        undefined=undefined,
        square=square,
        annot_kws=annot_kws,
        cbar_kws=cbar_kws,
        **kwargs,
    )
    if title:
        ax.set_title(names.title_text(title))
    return ax


def plot_interval_heatmap(
    mean: pd.DataFrame | np.ndarray,
    low: pd.DataFrame | np.ndarray,
    high: pd.DataFrame | np.ndarray,
    title: str | None = None,
    ax: Axes | None = None,
    *,
    labels: Sequence[str] | None = None,
    cmap: str = SEQUENTIAL_CMAP,
    fmt: str = ".2f",
    cbar_label: str | None = "mean",
    annot_kws: Mapping | None = None,
    **kwargs,
) -> Axes:
    """Mean as colour, with its interval written in each cell as "m [low, high]".

    Meant for bootstrap CIs or stability across seeds; cells whose interval is wider than
    the median width are hatched, so unstable pairs stand out even without reading numbers.
    NumPy arrays are labelled by `labels`. Further keywords go to `Axes.pcolormesh`.
    """
    mean = as_frame(mean, "mean", labels)
    low, high = as_frame(low, "low", labels), as_frame(high, "high", labels)
    for other, name in ((low, "low"), (high, "high")):
        if (
            other.shape != mean.shape
            or list(other.index) != list(mean.index)
            or list(other.columns) != list(mean.columns)
        ):
            raise UserError(f"{name} must have the same index and columns as mean")
    m, lo, hi = (x.to_numpy(dtype=float) for x in (mean, low, high))
    both = np.isfinite(m) & np.isfinite(lo) & np.isfinite(hi)
    if np.any(both & ((lo > m + 1e-12) | (hi < m - 1e-12))):
        raise UserError("every interval must contain its mean (low <= mean <= high)")
    texts = np.empty(m.shape, dtype=object)
    for idx in np.ndindex(m.shape):
        texts[idx] = (f"{cell_text(m[idx], fmt)}\n"
                      f"[{cell_text(lo[idx], fmt)}, {cell_text(hi[idx], fmt)}]")
    width, height = _size_for(*m.shape)
    fig, ax = figure_and_axes(ax, width * 1.4, height * 1.2)
    _draw_heatmap(
        ax,
        m,
        list(mean.index),
        list(mean.columns),
        cmap=cmap,
        norm=_norm_for(m, None, None, None),
        annot=texts,
        fmt=fmt,
        cbar_label=cbar_label,
        cbar=True,
        undefined=~np.isfinite(m),
        square=False,
        annot_kws={"fontsize": "xx-small", **(annot_kws or {})},
        **kwargs,
    )
    widths = np.where(both, hi - lo, np.nan)
    if np.isfinite(widths).any():
        cut = np.nanmedian(widths)
        for (i, j), w in np.ndenumerate(widths):
            if np.isfinite(w) and w > cut:
                ax.add_patch(
                    Rectangle(
                        (j - 0.5, i - 0.5),
                        1,
                        1,
                        fill=False,
                        hatch="///",
                        lw=0,
                        edgecolor="0.5",
                        alpha=0.6,
                    )
                )
    if title:
        ax.set_title(names.title_text(title))
    return ax
