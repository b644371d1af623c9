"""Figures across methods: method x method agreement per model (small multiples) and the
family test's p-value per method beside the smallest p the test can reach."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..errors import UserError
from ._validate import require_frame
from .figures_matrix import plot_matrix_heatmap
from .style import (
    COLUMN_WIDTH_IN,
    OKABE_ITO,
    PAGE_WIDTH_IN,
    family_palette,
    family_sort_key,
    figure_and_axes,
    new_figure,
    paper_style,
    resolve_families,
)

AGREEMENT_COLUMNS = {"model", "method_a", "method_b", "mean"}


def method_matrix(table: pd.DataFrame, model: str, methods: Sequence[str]) -> pd.DataFrame:
    """The symmetric method x method matrix of one model from the long agreement table
    (diagonal 1: a method agrees with itself; NaN where a pair was not computed)."""
    rows = table[table["model"] == model]
    M = pd.DataFrame(np.nan, index=list(methods), columns=list(methods))
    for _, row in rows.iterrows():
        M.loc[row["method_a"], row["method_b"]] = row["mean"]
        M.loc[row["method_b"], row["method_a"]] = row["mean"]
    present = [m for m in methods if M.loc[m].notna().any()]
    M = M.loc[present, present].copy()
    for method in present:
        M.loc[method, method] = 1.0
    return M


@paper_style
def plot_method_agreement(
    table: pd.DataFrame,
    families: Mapping[str, str] | None = None,
    *,
    metric: str = "similarity",
    labels: Mapping[str, str] | None = None,
    vmin: float | None = None,
    vmax: float | None = 1.0,
    ncols: int = 4,
) -> Figure:
    """One small heatmap per model (grouped by family): mean per-image similarity of every
    pair of methods' maps. `table`: long rows model, method_a, method_b, mean (as
    stages/method_agreement.py writes it); `labels`: display name per method."""
    table = require_frame(table, "table")
    missing = AGREEMENT_COLUMNS - set(table.columns)
    if missing:
        raise UserError(f"table lacks columns {sorted(missing)}; accepted: a long table with "
                        f"{sorted(AGREEMENT_COLUMNS)}")
    models = list(dict.fromkeys(table["model"].astype(str)))
    fam = resolve_families(models, families)
    models.sort(key=lambda m: family_sort_key(fam[m]))
    methods = list(dict.fromkeys([*table["method_a"], *table["method_b"]]))
    if vmin is None:
        vmin = min(0.0, float(np.nanmin(table["mean"].astype(float))))
    ncols = max(1, min(ncols, len(models)))
    nrows = -(-len(models) // ncols)
    side = 1.0 + 0.34 * len(methods)
    fig = new_figure(min(PAGE_WIDTH_IN, side * ncols + 0.6), side * nrows + 0.3)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    colors = family_palette(fam.values())
    for k, (ax, model) in enumerate(zip(axes, models, strict=False)):
        M = method_matrix(table, model, methods).rename(index=labels or {}, columns=labels or {})
        plot_matrix_heatmap(M, ax=ax, vmin=vmin, vmax=vmax, cbar=False,
                            mask_diagonal=True)  # one shared colour bar below
        if k % ncols and len(M) == len(methods):  # method names once per row of panels
            ax.set_yticklabels([])
        if k + ncols < len(models) and len(M) == len(methods):  # and once per column
            ax.set_xticklabels([])
        ax.set_title(f"{model}\n({fam[model]})", color=colors[fam[model]], fontsize=7)
    for ax in axes[len(models):]:
        ax.set_visible(False)
    # the cells: an image or (vector cells) a QuadMesh
    image = next(a for ax in axes for a in [*ax.images, *ax.collections]
                 if a.get_array() is not None)
    bar = fig.colorbar(image, ax=list(axes[: len(models)]), orientation="horizontal",
                       shrink=0.5, aspect=40, pad=0.02)
    bar.set_label(f"mean per-image {metric} between two methods' maps")
    bar.outline.set_visible(False)
    return fig


@paper_style
def plot_family_test_summary(
    tests: pd.DataFrame,
    *,
    alpha: float = 0.05,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """For each method, the p-value of "architecture family explains the structure"
    (filled dot) and the smallest p the test could give with these models (open bar):
    a dot at its bar is the strongest evidence possible; a bar right of `alpha` means the
    test cannot reach significance at all. `tests`: index method (display name), columns
    p_value and floor."""
    tests = require_frame(tests, "tests")
    missing = {"p_value", "floor"} - set(tests.columns)
    if missing:
        raise UserError(f"tests lacks columns {sorted(missing)}; accepted: p_value, floor")
    fig, ax = figure_and_axes(ax, COLUMN_WIDTH_IN, 0.9 + 0.28 * len(tests))
    y = np.arange(len(tests))[::-1]
    p = tests["p_value"].astype(float).to_numpy()
    floor = tests["floor"].astype(float).to_numpy()
    ax.axvspan(min(1e-3, np.nanmin(floor, initial=1.0) / 2), alpha, color="#eeeeee", zorder=0)
    ax.axvline(alpha, color="0.4", lw=0.8, ls="--", zorder=1)
    ax.scatter(floor, y, marker="|", s=160, color=OKABE_ITO["vermillion"], zorder=2)
    ax.scatter(p, y, s=28, color=OKABE_ITO["blue"], zorder=3)
    for yi, pi in zip(y, p, strict=True):
        if np.isfinite(pi):
            ax.annotate(f"{pi:.2g}", (pi, yi), xytext=(0, 5), textcoords="offset points",
                        ha="center", fontsize=6)
    ax.set_xscale("log")
    ax.set_xlim(min(1e-3, np.nanmin(floor, initial=1.0) / 2), 1.3)
    ax.set_yticks(y, [str(i) for i in tests.index])
    ax.set_ylim(-0.7, len(tests) - 0.3)
    ax.set_xlabel("permutation p-value (log scale)")
    ax.legend(handles=[
        Line2D([], [], marker="o", ls="", color=OKABE_ITO["blue"], label="observed p"),
        Line2D([], [], marker="|", ls="", markersize=10, color=OKABE_ITO["vermillion"],
               label="smallest attainable p"),
        Line2D([], [], ls="--", color="0.4", label=f"p = {alpha}")],
        loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(tests) < 4 else -0.2),
        ncol=3, frameon=False, fontsize=6)
    if title:
        ax.set_title(title)
    return fig
