"""The figures a paper would use, at single-column (3.5 in) and page (7 in) width, in PDF,
SVG and PNG: explanation similarity with its dendrogram, the family tests, an atlas
excerpt, error consistency and ensemble gain against diversity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..errors import UserError
from . import names
from ._validate import require_frame
from .atlas import plot_atlas
from .figures_diversity import plot_gain_vs_diversity
from .figures_matrix import plot_dissimilarity_heatmap, plot_matrix_heatmap
from .figures_structure import plot_dendrogram
from .style import OKABE_ITO, figure_and_axes, save_figure, style

WIDTHS = {"column": 3.5, "page": 7.0}
PAPER_FORMATS = ("pdf", "svg", "png")


@dataclass
class PaperInputs:
    """What the paper figures draw; any part left None is skipped."""

    dissimilarity: pd.DataFrame | None = None  # models x models, the primary method / metric
    linkage: np.ndarray | None = None  # scipy linkage over dissimilarity's models
    linkage_labels: Sequence[str] | None = None
    families: Mapping[str, str] | None = None
    similarity_title: str = "explanation dissimilarity"
    family_tests: pd.DataFrame | None = None  # method, metric, test, p_value[, n_permutations]
    atlas: dict | None = None  # plot_atlas arguments: image, maps, predictions, true_label
    error_consistency: pd.DataFrame | None = None
    ensembles: pd.DataFrame | None = None
    extra_rc: dict = field(default_factory=dict)


def plot_family_tests(tests: pd.DataFrame, ax: Axes | None = None, *, alpha: float = 0.05,
                      **kwargs) -> Axes:
    """Per method / metric: the p-values of PERMANOVA (do families differ in where their
    explanations sit?) and PERMDISP (do they differ in spread?), on a log axis with the
    alpha line and, where the tests were exact, the smallest p that so few models allow
    (grey band: unreachable). Columns method, metric, test, p_value, optional n_permutations.
    """
    tests = require_frame(tests, "tests", ["method", "metric", "test", "p_value"])
    rows = tests[tests["test"].isin(["permanova", "permdisp"]) & tests["p_value"].notna()]
    if rows.empty:
        raise UserError("tests has no permanova / permdisp p-values to show")
    keys = list(dict.fromkeys(zip(rows["method"], rows["metric"], strict=True)))
    fig, ax = figure_and_axes(ax, WIDTHS["column"], 0.3 * len(keys) + 1.1)
    styles = {"permanova": {"marker": "o", "color": OKABE_ITO["blue"], "label": "PERMANOVA"},
              "permdisp": {"marker": "s", "color": OKABE_ITO["orange"], "label": "PERMDISP",
                           "mfc": "none"}}
    floor = 1.0
    for k, (method, metric) in enumerate(keys):
        part = rows[(rows["method"] == method) & (rows["metric"] == metric)]
        y = len(keys) - 1 - k
        for _, row in part.iterrows():
            ax.plot(float(row["p_value"]), y, ls="", ms=5, **{**styles[row["test"]], **kwargs,
                                                               "label": None})
            if "n_permutations" in row and pd.notna(row.get("n_permutations")):
                floor = min(floor, 1.0 / float(row["n_permutations"]))
    lowest = min(floor, float(rows["p_value"].min()))
    ax.set_xscale("log")
    ax.set_xlim(lowest / 2, 1.05)
    if floor < 1.0 and "n_permutations" in rows and rows["n_permutations"].notna().any():
        ax.axvspan(lowest / 2, floor, color="0.9", lw=0)
        ax.text(floor, len(keys) - 0.5, " smallest\n attainable p", va="top",
                fontsize="x-small", color="0.35")
    ax.axvline(alpha, color="0.3", ls="--", lw=0.8)
    ax.set_yticks(range(len(keys))[::-1],
                  [f"{names.method_label(m)} / {metric}" for m, metric in keys])
    ax.set_ylim(-0.6, len(keys) - 0.4)
    ax.set_xlabel("p-value (family effect)")
    handles = [Line2D([], [], ls="", **{**s, "ms": 5}) for s in styles.values()]
    handles.append(Line2D([], [], color="0.3", ls="--", lw=0.8, label=f"α = {alpha:g}"))
    # right-aligned above the axes: a legend wider than the axes reaches left over the tick
    # labels; anchored at the left it overhung the right edge, constrained layout narrowed
    # the axes for it, the overhang grew, and the axes collapsed (3.5 in, long method names)
    ax.legend(handles=handles, frameon=False, fontsize="x-small", ncol=3, loc="lower right",
              bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)
    return ax


def plot_similarity_with_dendrogram(D: pd.DataFrame, linkage, labels: Sequence[str],
                                    families: Mapping[str, str] | None = None,
                                    *, width: float = WIDTHS["page"],
                                    cbar_label: str = "dissimilarity") -> Figure:
    """Dendrogram (root left) beside the dissimilarity heatmap in leaf order, rows aligned."""
    from scipy.cluster import hierarchy

    labels = [str(x) for x in labels]
    order = [labels[k] for k in hierarchy.leaves_list(np.asarray(linkage, dtype=float))]
    n = len(order)
    fig = Figure(figsize=(width, min(width * 0.8, 0.28 * n + 1.6)), layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=[1, 3.2])
    tree_ax, heat_ax = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    plot_dendrogram(linkage, labels, families, ax=tree_ax, orientation="left", no_labels=True,
                    legend=False, distance_label="")
    tree_ax.spines[["top", "right", "left"]].set_visible(False)
    plot_dissimilarity_heatmap(D.loc[order, order], families, order=order, ax=heat_ax,
                               square=False, cbar_label=cbar_label,
                               annot=n <= (8 if width < 5 else 12))
    # scipy puts leaf k at y = 10 k + 5; the heatmap's row k at y = k (its range includes
    # the family strip): the same range in both puts each leaf beside its row, first on top
    tree_ax.set_ylim(*(10 * y + 5 for y in heat_ax.get_ylim()))
    return fig


def _draw(name: str, width_name: str, inputs: PaperInputs) -> Figure | None:
    width = WIDTHS[width_name]
    if name == "similarity_dendrogram":
        if inputs.dissimilarity is None or inputs.linkage is None:
            return None
        return plot_similarity_with_dendrogram(inputs.dissimilarity, inputs.linkage,
                                               inputs.linkage_labels or list(
                                                   inputs.dissimilarity.index),
                                               inputs.families, width=width,
                                               cbar_label=inputs.similarity_title)
    if name == "atlas_excerpt":
        if inputs.atlas is None:
            return None
        n_methods = max(len(row) for row in inputs.atlas["maps"].values())
        return plot_atlas(**inputs.atlas, families=inputs.families,
                          cell_inches=max(0.45, (width - 1.2) / (n_methods + 1)))
    table = {"family_tests": inputs.family_tests, "error_consistency": inputs.error_consistency,
             "accuracy_vs_diversity": inputs.ensembles}[name]
    if table is None or len(table) == 0:
        return None
    fig = Figure(figsize=(width, width * 0.62 if width_name == "page" else width * 0.85),
                 layout="constrained")
    ax = fig.add_subplot()
    if name == "family_tests":
        fig.set_size_inches(width, 0.3 * table[["method", "metric"]].drop_duplicates().shape[0]
                            + 1.3)
        plot_family_tests(table, ax=ax)
    elif name == "error_consistency":
        plot_matrix_heatmap(table, center=0.0, ax=ax, mask_diagonal=True,
                            cbar_label="error consistency (κ)",
                            annot=len(table) <= (8 if width_name == "column" else 12))
    else:
        plot_gain_vs_diversity(table, ax=ax)
    return fig


PAPER_FIGURES = ("similarity_dendrogram", "family_tests", "atlas_excerpt", "error_consistency",
                 "accuracy_vs_diversity")


def write_paper_figures(inputs: PaperInputs, out_dir: str | Path,
                        formats: Sequence[str] = PAPER_FORMATS) -> list[Path]:
    """Each paper figure whose inputs exist, at column and page width, as
    `<out_dir>/<figure>_<column|page>.<pdf|svg|png>`; returns the written paths."""
    written: list[Path] = []
    for name in PAPER_FIGURES:
        for width_name in WIDTHS:
            with style(**inputs.extra_rc):
                fig = _draw(name, width_name, inputs)
                if fig is not None:
                    written += save_figure(fig, Path(out_dir) / f"{name}_{width_name}",
                                           formats=formats, dpi=300, tight=False)
    return written
