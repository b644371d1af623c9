"""Prediction-level figures: ensemble gain vs diversity, corruption retention, calibration,
and localisation against object masks."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from ..errors import UserError
from . import names
from ._validate import require_frame, require_numeric_columns
from .labels import annotate_points
from .style import (
    OKABE_ITO,
    PAGE_WIDTH_IN,
    categorical_colors,
    figure_and_axes,
    new_figure,
)

_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")


def plot_gain_vs_diversity(
    table: pd.DataFrame,
    ax: Axes | None = None,
    *,
    xlabel: str = "diversity",
    ylabel: str = "ensemble gain (accuracy)",
    annotate: bool = True,
    **kwargs,
) -> Axes:
    """One point per ensemble (or pair); title carries Spearman's rho, its p-value and n.

    Columns diversity, gain, label; `diversity.ensemble_table`'s own columns
    (zero_one_diversity, accuracy_gain, members) are accepted as they are. Point labels never
    overlap: where the names do not fit, points are numbered and a key beside the axes names
    them. Further keywords go to `Axes.scatter`. Returns the Axes.
    """
    if isinstance(table, pd.DataFrame) and "members" in table.columns and "label" not in table:
        table = table.rename(columns={"zero_one_diversity": "diversity",
                                      "accuracy_gain": "gain"}).assign(
            label=[_members_label(m) for m in table["members"]])
    table = require_frame(table, "table", ["diversity", "gain", "label"])
    require_numeric_columns(table, ["diversity", "gain"], "table")
    fig, ax = figure_and_axes(ax, 3.3, 2.8)
    x, y = table["diversity"].to_numpy(float), table["gain"].to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y)
    ax.scatter(x[ok], y[ok], **{"s": 22, "color": OKABE_ITO["blue"], "edgecolors": "black",
                                "linewidths": 0.4, "zorder": 3, **kwargs})
    ax.axhline(0.0, color="0.6", lw=0.8, ls=":")
    n = int(ok.sum())
    if n >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
        rho, p = stats.spearmanr(x[ok], y[ok])
        ax.set_title(f"Spearman ρ = {rho:.2f} (p = {p:.2g}, n = {n})")
    else:  # a rank correlation over < 3 points or a constant is undefined: say so
        ax.set_title(f"Spearman ρ undefined (n = {n})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if annotate:
        annotate_points(ax, np.column_stack([x[ok], y[ok]]), list(table["label"].astype(str)[ok]))
    return ax


def _members_label(members) -> str:
    """'a + b' in display names, from a tuple or the table's 'a+b' / 'a + b' string."""
    if isinstance(members, str):
        parts = [p.strip() for p in members.split("+")] if "+" in members else [members]
    else:
        parts = [str(m) for m in members]
    return " + ".join(names.model_label(p) for p in parts)


def _with_clean_anchor(frame: pd.DataFrame) -> pd.DataFrame:
    """Add retention 1.0 at severity 0 for each (model, corruption) curve that lacks it."""
    groups = frame.groupby(["model", "corruption"], sort=False)
    has_clean = groups["severity"].apply(lambda s: bool((s == 0).any()))
    defined = groups["retention"].apply(lambda r: bool(r.notna().any()))
    need = has_clean[~has_clean & defined].index
    if len(need) == 0:
        return frame
    anchors = pd.DataFrame(list(need), columns=["model", "corruption"]).assign(
        severity=0, retention=1.0
    )
    return pd.concat([frame, anchors], ignore_index=True)


def plot_retention_curves(
    table: pd.DataFrame,
    axes: Axes | Sequence[Axes] | None = None,
    *,
    ensembles: Sequence[str] = (),
    ylabel: str = "retention (acc / clean acc)",
    **kwargs,
) -> Figure:
    """Accuracy retention vs corruption severity, one panel per corruption, one line per model.

    Models named in `ensembles` are drawn thick and black-edged so they stand apart from the
    members. Pass `axes` (one per corruption, in sorted corruption order) to draw into yours.
    Curves without a severity-0 row start from the clean point (0, 1), which retention is by
    definition; a model whose retention is NaN everywhere gets no anchor.
    Further keywords go to `Axes.plot` for every model's line (e.g. `alpha`, `markersize`).
    """
    columns = ["model", "corruption", "severity", "retention"]
    table = require_frame(table, "table", columns)
    require_numeric_columns(table, ["severity", "retention"], "table")
    corruptions = sorted(table["corruption"].astype(str).unique())
    models = list(dict.fromkeys(table["model"].astype(str)))
    if axes is None:
        ncols = min(len(corruptions), 4)
        nrows = math.ceil(len(corruptions) / ncols)
        fig = new_figure(min(PAGE_WIDTH_IN, 1.9 * ncols + 1.6), 1.7 * nrows + 0.5)
        grid = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
        for extra in grid[len(corruptions) :]:
            extra.set_visible(False)
        panels = list(grid[: len(corruptions)])
    else:
        panels = [axes] if isinstance(axes, Axes) else list(axes)
        if len(panels) != len(corruptions):
            raise UserError(
                f"axes has {len(panels)} Axes but the table has {len(corruptions)} "
                f"corruption(s): {corruptions}"
            )
        fig = panels[0].figure
    colors = categorical_colors(len(models))
    style = {
        m: {
            "color": "black" if m in ensembles else colors[k],
            "lw": 2.2 if m in ensembles else 1.1,
            "ls": _LINESTYLES[k // 8 % 4],
            "marker": _MARKERS[k % len(_MARKERS)],
        }
        for k, m in enumerate(models)
    }
    frame = _with_clean_anchor(
        table.assign(model=table["model"].astype(str), corruption=table["corruption"].astype(str))
    )
    for panel, corruption in zip(panels, corruptions, strict=True):
        sub = frame[frame["corruption"] == corruption]
        for model, rows in sub.groupby("model", sort=False):
            rows = rows.sort_values("severity")
            panel.plot(
                rows["severity"], rows["retention"],
                **{"label": names.model_label(model), "markersize": 3, **style[model], **kwargs}
            )
        panel.set_title(corruption.replace("_", " "))
        panel.set_xticks(range(0, 6))
        panel.set_xlim(-0.2, 5.2)
        panel.axhline(1.0, color="0.7", lw=0.7, ls=":")
        panel.grid(axis="y", color="0.92", lw=0.6)
    top = max(1.05, float(np.nanmax(frame["retention"])) * 1.02)
    panels[0].set_ylim(0, top)
    if axes is None:
        fig.supxlabel("severity (0 = clean)")
        fig.supylabel(ylabel)
        handles, labels = panels[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", frameon=False)
    else:
        panels[0].legend(frameon=False, fontsize="x-small")
    return fig


def plot_reliability_diagram(
    bins: pd.DataFrame,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    legend_loc: str = "outside",
    **kwargs,
) -> Axes:
    """Accuracy vs confidence per bin; gaps to the diagonal shaded, ECE in the title.

    A `model` column draws one line per model instead of bars: each its own colour, line
    style and marker, so seven models stay apart; the legend sits beside the axes
    (`legend_loc="outside"`, never over the lines) or where matplotlib's `loc` says. Empty
    bins (count 0) are skipped. ECE = sum over bins of count/N * |accuracy - confidence|
    (computed from the table). Further keywords go to `Axes.plot` / `Axes.bar`.
    """
    columns = ["bin", "confidence", "accuracy", "count"]
    bins = require_frame(bins, "bins", columns)
    require_numeric_columns(bins, ["confidence", "accuracy", "count"], "bins")
    if (bins["count"] < 0).any():
        raise UserError("bins column 'count' must be >= 0")
    fig, ax = figure_and_axes(ax, 4.4 if "model" in bins.columns else 3.0, 3.0)
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=0.9, label="perfect calibration")
    groups = bins.groupby("model", sort=False) if "model" in bins.columns else [(None, bins)]
    eces = {}
    colors = categorical_colors(max(1, len(groups) if "model" in bins.columns else 1))
    for k, (model, rows) in enumerate(groups):
        rows = rows[rows["count"] > 0].sort_values("confidence")
        weights = rows["count"] / rows["count"].sum()
        eces[model] = float((weights * (rows["accuracy"] - rows["confidence"]).abs()).sum())
        if model is None:
            width = 1.0 / max(len(bins), 1)
            ax.bar(
                rows["confidence"],
                rows["accuracy"],
                width=width * 0.9,
                color=colors[0],
                edgecolor="black",
                linewidth=0.4,
                label="accuracy",
                **kwargs,
            )
            ax.bar(
                rows["confidence"],
                rows["confidence"] - rows["accuracy"],
                bottom=rows["accuracy"],
                width=width * 0.9,
                color=OKABE_ITO["vermillion"],
                alpha=0.35,
                label="gap",
            )
        else:
            ax.plot(
                rows["confidence"],
                rows["accuracy"],
                **{"marker": _MARKERS[k % len(_MARKERS)], "markersize": 3.5,
                   "ls": _LINESTYLES[k % len(_LINESTYLES)], "color": colors[k],
                   "label": f"{names.model_label(model)} (ECE {eces[model]:.3f})", **kwargs},
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    if legend_loc == "outside":
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
                  fontsize="x-small")
    else:
        ax.legend(frameon=False, loc=legend_loc, fontsize="x-small")
    if title is None and None in eces:
        title = f"ECE = {eces[None]:.3f}"
    if title:
        ax.set_title(names.title_text(title))
    return ax


def plot_localisation(
    table: pd.DataFrame,
    axes: Sequence[Axes] | None = None,
    **kwargs,
) -> Figure:
    """Per model: pointing-game hit rate and share of attribution inside the object mask.

    Columns: model, pointing_game, mass_in_mask (as `compare.localisation_scores` names it;
    `mask_share` is accepted too); optional `method` (one bar per method in each model group)
    and `mask_area` (mean mask fraction: the chance level of both scores, drawn dashed).
    Further keywords go to `Axes.bar` (e.g. `edgecolor`, `hatch`).
    """
    if isinstance(table, pd.DataFrame) and "mass_in_mask" not in table.columns:
        table = table.rename(columns={"mask_share": "mass_in_mask"})
    table = require_frame(table, "table", ["model", "pointing_game", "mass_in_mask"])
    require_numeric_columns(table, ["pointing_game", "mass_in_mask"], "table")
    if axes is None:
        fig = new_figure(PAGE_WIDTH_IN, 2.6)
        panels = list(fig.subplots(1, 2, sharey=True))
    else:
        panels = list(axes)
        if len(panels) != 2:
            raise UserError(f"axes must be two Axes (pointing game, mask share), got {len(panels)}")
        fig = panels[0].figure
    frame = table.assign(model=table["model"].astype(str))
    if "method" not in frame.columns:
        frame = frame.assign(method="attribution")
    models = list(dict.fromkeys(frame["model"]))
    methods = list(dict.fromkeys(frame["method"].astype(str)))
    colors = categorical_colors(len(methods))
    width = 0.8 / len(methods)
    positions = np.arange(len(models))
    for panel, metric, label in zip(
        panels,
        ("pointing_game", "mass_in_mask"),
        ("pointing-game hit rate", "attribution inside mask"),
        strict=True,
    ):
        wide = frame.pivot_table(index="model", columns="method", values=metric, aggfunc="mean")
        for k, method in enumerate(methods):
            heights = wide.reindex(index=models)[method].to_numpy(float)
            panel.bar(
                positions - 0.4 + width * (k + 0.5),
                heights,
                **{"width": width * 0.95, "color": colors[k],
                   "label": names.method_label(method), **kwargs},
            )
        panel.set_xticks(positions, names.labels(models), rotation=45, ha="right",
                         rotation_mode="anchor")
        panel.set_title(label)
        panel.set_ylim(0, 1)
        panel.grid(axis="y", color="0.92", lw=0.6)
    if "mask_area" in frame.columns:
        area = float(frame["mask_area"].mean())
        for panel in panels:
            panel.axhline(area, color="0.3", ls="--", lw=0.9, label="chance (mask area)")
    panels[0].set_ylabel("rate / share")
    handles, labels = panels[1].get_legend_handles_labels()
    if len(labels) > 1 and axes is None:
        fig.legend(handles, labels, loc="outside upper center", ncol=len(labels), frameon=False)
    elif len(labels) > 1:
        panels[1].legend(handles, labels, frameon=False, fontsize="x-small")
    return fig


def plot_cue_conflict(table: pd.DataFrame, ax: Axes | None = None, **kwargs) -> Axes:
    """Decisions on cue-conflict images per model: shape (the label), texture (a class the
    texture was cued with) or another class, as stacked bars; the black tick marks where the
    texture segment would end for a texture-blind model with the same accuracy.

    Columns (as `diversity.texture_reliance` names them): model, accuracy_conflict,
    texture_decisions, other_errors; optional texture_decisions_chance and shape_bias.
    Further keywords go to `Axes.barh`. Returns the Axes.
    """
    table = require_frame(table, "table",
                          ["model", "accuracy_conflict", "texture_decisions", "other_errors"])
    require_numeric_columns(table, ["accuracy_conflict", "texture_decisions", "other_errors"],
                            "table")
    fig, ax = figure_and_axes(ax, 3.6, 0.45 * len(table) + 1.0)
    rows = np.arange(len(table))[::-1]
    left = np.zeros(len(table))
    for column, label, color in (("accuracy_conflict", "shape", OKABE_ITO["blue"]),
                                 ("texture_decisions", "texture", OKABE_ITO["orange"]),
                                 ("other_errors", "other", "0.8")):
        values = table[column].to_numpy(float)
        ax.barh(rows, values, left=left, **{"color": color, "label": label, "height": 0.7,
                                            **kwargs})
        left += values
    if "texture_decisions_chance" in table.columns:
        chance = table["accuracy_conflict"].to_numpy(float) + \
            table["texture_decisions_chance"].to_numpy(float)
        ax.scatter(chance, rows, marker="|", s=220, color="black", zorder=3,
                   label="texture: chance")
    if "shape_bias" in table.columns:
        for row, bias in zip(rows, table["shape_bias"].to_numpy(float), strict=True):
            ax.text(1.02, row, f"{bias:.2f}", va="center", fontsize="small",
                    transform=ax.get_yaxis_transform())
        ax.text(1.02, len(table) - 0.35, "shape\nbias", fontsize="small", va="bottom",
                transform=ax.get_yaxis_transform())
    ax.set_yticks(rows, names.labels(table["model"].astype(str)))
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of cue-conflict images")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4, frameon=False,
              fontsize="small")
    return ax
