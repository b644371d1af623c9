"""Figures of the comparison lenses: explanation, representation and error matrices side by
side; consensus score against accuracy; agreement stratified by prediction outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..errors import UserError
from . import names
from ._validate import require_frame, require_numeric_columns
from .figures_matrix import plot_dissimilarity_heatmap
from .style import (
    OKABE_ITO,
    family_palette,
    figure_and_axes,
    new_figure,
    resolve_families,
)

STRATA_COLORS = {"both_correct": OKABE_ITO["blue"], "one_correct": OKABE_ITO["orange"],
                 "both_wrong": OKABE_ITO["vermillion"]}
STRATA_LABELS = {"both_correct": "both right", "one_correct": "one right",
                 "both_wrong": "both wrong"}


def plot_matrix_trio(matrices: Mapping[str, pd.DataFrame], order: Sequence[str] | None = None,
                     families: Mapping[str, str] | None = None,
                     axes: Sequence[Axes] | None = None) -> Figure:
    """Dissimilarity matrices (e.g. explanation, representation, errors) in one model order.

    matrices: title -> models x models dissimilarity (0 = alike); models missing from one
    matrix are blank there. order: the shared model order (default: the first's index).
    axes: one Axes per matrix to draw into (default: a new row of panels). Returns the Figure.
    """
    if not matrices:
        raise UserError("plot_matrix_trio needs at least one matrix")
    frames = {t: require_frame(m, t) for t, m in matrices.items()}
    order = list(order) if order is not None else list(next(iter(frames.values())).index)
    n = len(frames)
    if axes is None:
        side = max(2.2, 0.32 * len(order) + 1.2)
        fig = new_figure(side * n + 0.4, side + 0.5)
        axes = fig.subplots(1, n, squeeze=False)[0]
    elif len(axes) != n:
        raise UserError(f"axes has {len(axes)} Axes for {n} matrices")
    else:
        fig = axes[0].figure
    for ax, (title, frame) in zip(axes, frames.items(), strict=True):
        full = frame.reindex(index=order, columns=order)
        plot_dissimilarity_heatmap(full, families=resolve_families(order, families),
                                   order=order, title=title, ax=ax, cbar_label="")
    return fig


def plot_consensus_vs_accuracy(scores: pd.DataFrame, accuracy: Mapping[str, float],
                               families: Mapping[str, str] | None = None,
                               ax: Axes | None = None, **kwargs) -> Axes:
    """Each model's consensus score (with its interval) against its accuracy; further
    keywords go to `Axes.errorbar`."""
    scores = require_frame(scores, "scores", ["model", "score", "low", "high"])
    require_numeric_columns(scores, ["score", "low", "high"], "scores")
    models = scores["model"].astype(str).tolist()
    acc = np.array([float(accuracy[m]) for m in models])
    fam = resolve_families(models, families)
    palette = family_palette(fam.values())
    fig, ax = figure_and_axes(ax, 3.4, 2.8)
    y = scores["score"].to_numpy(float)
    err = np.abs(np.vstack([y - scores["low"].to_numpy(float),
                            scores["high"].to_numpy(float) - y]))
    for i, model in enumerate(models):
        color = palette[fam[model]]
        ax.errorbar(acc[i], y[i], yerr=err[:, i:i + 1], **{"fmt": "o", "color": color, "ms": 4,
                                                           "capsize": 2, "lw": 0.8, **kwargs})
        ax.annotate(names.model_label(model), (acc[i], y[i]), xytext=(4, 3),
                    textcoords="offset points", fontsize="x-small", color=color)
    ax.set_xlabel("accuracy")
    ax.set_ylabel("consensus score (leave-one-out)")
    handles = [Line2D([], [], marker="o", ls="", color=palette[f], label=f)
               for f in dict.fromkeys(fam.values())]
    ax.legend(handles=handles, frameon=False, fontsize="small", loc="best")
    return ax


def plot_strata(table: pd.DataFrame, ax: Axes | None = None, **kwargs) -> Axes:
    """Per model pair: mean agreement when both models are right, one is, neither is.
    Further keywords go to `Axes.errorbar`.

    table: `diversity.stratified_agreement` rows (split == "outcome" used). Hollow markers
    and no interval: the stratum has fewer images than its `min_count` (`enough` False).
    """
    table = require_frame(table, "table", ["model_a", "model_b", "split", "stratum", "mean",
                                           "low", "high", "enough"])
    rows = table[table["split"] == "outcome"]
    pairs = list(dict.fromkeys(zip(rows["model_a"], rows["model_b"], strict=True)))
    fig, ax = figure_and_axes(ax, 3.6, 0.32 * len(pairs) + 1.1)
    offsets = {"both_correct": -0.2, "one_correct": 0.0, "both_wrong": 0.2}
    for k, (a, b) in enumerate(pairs):
        part = rows[(rows["model_a"] == a) & (rows["model_b"] == b)]
        for _, row in part.iterrows():
            stratum = row["stratum"]
            y = len(pairs) - 1 - k + offsets[stratum]
            color = STRATA_COLORS[stratum]
            if bool(row["enough"]):
                ax.errorbar(row["mean"], y, xerr=[[row["mean"] - row["low"]],
                                                  [row["high"] - row["mean"]]],
                            **{"fmt": "o", "color": color, "ms": 3.5, "capsize": 1.5,
                               "lw": 0.8, **kwargs})
            elif np.isfinite(row["mean"]):
                ax.plot(row["mean"], y, "o", mfc="none", color=color, ms=3.5)
    ax.set_yticks(range(len(pairs))[::-1],
                  [f"{names.model_label(a)} / {names.model_label(b)}" for a, b in pairs])
    ax.set_xlabel("mean explanation similarity")
    handles = [Line2D([], [], marker="o", ls="", color=c, label=STRATA_LABELS[s])
               for s, c in STRATA_COLORS.items()]
    handles.append(Line2D([], [], marker="o", ls="", mfc="none", color="0.4",
                          label="too few images"))
    ax.legend(handles=handles, frameon=False, fontsize="small", ncol=2, loc="lower right",
              bbox_to_anchor=(1.0, 1.0))  # above the axes, clear of the long pair labels
    return ax


SWEEP_LABELS = {"topk": "feature", "topk_sign": "sign", "rank": "rank",
                "signed_rank": "signed rank"}
SWEEP_MARKERS = {"topk": "o", "topk_sign": "s", "rank": "^", "signed_rank": "v"}


def plot_agreement_sweep(table: pd.DataFrame, ax: Axes | None = None, **kwargs) -> Axes:
    """Mean top-k agreement over model pairs against k, per metric; solid: pairs of one
    family, dashed: pairs across families (when both kinds exist). Further keywords go to
    `Axes.plot`."""
    table = require_frame(table, "table", ["fraction", "metric", "mean", "same_family"])
    fig, ax = figure_and_axes(ax, 3.4, 2.6)
    colors = dict(zip(SWEEP_LABELS, (OKABE_ITO["blue"], OKABE_ITO["orange"],
                                     OKABE_ITO["bluish_green"], OKABE_ITO["reddish_purple"]),
                      strict=True))
    kinds = [(True, "-", "same family"), (False, "--", "across families")]
    kinds = [k for k in kinds if (table["same_family"] == k[0]).any()]
    for metric, part in table.groupby("metric", sort=False):
        for same, style, _ in kinds:
            mean = part[part["same_family"] == same].groupby("fraction")["mean"].mean()
            ax.plot(mean.index * 100, mean.to_numpy(), style, ms=3.5, mfc="none",
                    marker=SWEEP_MARKERS.get(metric, "o"),  # overlapping lines stay visible
                    color=colors.get(metric, "0.3"), label=SWEEP_LABELS.get(metric, metric)
                    if same == kinds[0][0] else None, **kwargs)
    ax.set_xscale("log")
    ticks = sorted(table["fraction"].unique() * 100)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("k (% of pixels, by |attribution|)")
    ax.set_ylabel("mean agreement over model pairs")
    ax.set_ylim(0, 1)
    handles, labels = ax.get_legend_handles_labels()
    if len(kinds) == 2:
        handles += [Line2D([], [], ls=s, color="0.3", label=t) for _, s, t in kinds]
    ax.legend(handles=handles, frameon=False, fontsize="small", ncol=2, loc="upper left")
    return ax
