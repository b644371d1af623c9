"""How models group: dendrogram, community graph, 2-D embedding, per-pair similarity spread."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib
import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy.cluster import hierarchy

from ..errors import UserError
from . import names
from ._validate import as_frame, require_frame, require_square
from .labels import annotate_points
from .style import (
    PAGE_WIDTH_IN,
    categorical_colors,
    community_colors,
    family_markers,
    family_palette,
    family_sort_key,
    figure_and_axes,
    new_figure,
    resolve_families,
)


def _family_legend(ax: Axes, fam: Mapping[str, str], *, markers: bool, **kwargs) -> None:
    palette, shapes = family_palette(fam.values()), family_markers(fam.values())
    handles = []
    for family in sorted(palette, key=family_sort_key):
        if markers:
            handles.append(
                Line2D(
                    [],
                    [],
                    ls="",
                    marker=shapes[family],
                    color=palette[family],
                    markersize=6,
                    label=family,
                )
            )
        else:
            handles.append(Patch(color=palette[family], label=family))
    ax.legend(handles=handles, title="family", frameon=False, **kwargs)


def plot_dendrogram(
    linkage_matrix,
    labels: Sequence[str] | None = None,
    families: Mapping[str, str] | None = None,
    ax: Axes | None = None,
    *,
    orientation: str = "right",
    distance_label: str = "dissimilarity",
    title: str | None = None,
    legend: bool | str = "auto",
    **kwargs,
) -> Axes:
    """scipy dendrogram with leaf labels coloured by family (links stay neutral grey).

    linkage_matrix: a scipy linkage [n-1, 4] with its `labels`, or an `xc.cluster` Tree
    (which carries both). Leaf labels use the tick label size of your rcParams. `legend`:
    the family legend, "auto" = only on a figure this function makes (in your own figure the
    coloured leaves and your heatmap's legend say it, and nothing spills onto the next
    panel). Further keywords go to `scipy.cluster.hierarchy.dendrogram`. Returns the Axes.
    """
    if hasattr(linkage_matrix, "linkage") and hasattr(linkage_matrix, "labels"):
        labels = linkage_matrix.labels if labels is None else labels
        linkage_matrix = linkage_matrix.linkage
    if labels is None:
        raise UserError("labels are needed with a bare linkage matrix (or pass a Tree)")
    Z = np.asarray(linkage_matrix, dtype=float)
    labels = [str(label) for label in labels]
    if Z.ndim != 2 or Z.shape[1] != 4 or not hierarchy.is_valid_linkage(Z):
        raise UserError(f"linkage_matrix must be a valid scipy linkage [n-1, 4], got {Z.shape}")
    if Z.shape[0] + 1 != len(labels):
        raise UserError(f"{len(labels)} labels given for a linkage over {Z.shape[0] + 1} leaves")
    if orientation not in ("right", "left", "top", "bottom"):
        raise UserError(f"orientation '{orientation}'; accepted: right, left, top, bottom")
    n = len(labels)
    long_side = max(2.0, 0.22 * n + 0.8)
    size = (3.3, long_side) if orientation in ("right", "left") else (max(3.3, long_side), 2.6)
    draw_legend = (ax is None) if legend == "auto" else bool(legend)
    fig, ax = figure_and_axes(ax, *size)
    vertical_leaves = orientation in ("right", "left")
    leaf_size = matplotlib.rcParams["ytick.labelsize" if vertical_leaves else "xtick.labelsize"]
    dendrogram = hierarchy.dendrogram(
        Z,
        labels=[names.model_label(x) for x in labels],
        ax=ax,
        orientation=orientation,
        **{"link_color_func": lambda _: "0.3", **kwargs},
    )
    leaves = [labels[k] for k in dendrogram["leaves"]]
    tick_labels = ax.get_yticklabels() if vertical_leaves else ax.get_xticklabels()
    for tick in tick_labels:
        tick.set_fontsize(leaf_size)
    if families is not None:
        fam = resolve_families(labels, families)
        palette = family_palette(fam.values())
        for tick, leaf in zip(tick_labels, leaves, strict=False):  # none with no_labels
            tick.set_color(palette[fam[leaf]])
        if draw_legend:
            _family_legend(ax, fam, markers=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    (ax.set_xlabel if vertical_leaves else ax.set_ylabel)(distance_label)
    if not vertical_leaves:
        ax.tick_params(axis="x", labelrotation=90)
    ax.tick_params(length=0, axis="y" if vertical_leaves else "x")
    for side in ("left", "right") if vertical_leaves else ("bottom", "top"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(names.title_text(title))
    return ax


def plot_community_graph(
    W: pd.DataFrame,
    communities: Mapping[str, int],
    families: Mapping[str, str] | None = None,
    ax: Axes | None = None,
    seed: int = 0,
    *,
    min_weight: float = 0.0,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    **kwargs,
) -> Axes:
    """Models as nodes, similarity as edges (width ~ weight), seeded spring layout.

    Node fill = community (pale colours, never a family's), marker shape = family, so a
    community that mixes families is visible at a glance. Edges with weight <= `min_weight`
    are not drawn (nor used in layout). W: a DataFrame or a NumPy array with `labels`.
    Further keywords go to `networkx.draw_networkx_nodes` (e.g. `node_size`, `alpha`).
    """
    W = require_square(W, "W", labels)
    models = [str(m) for m in W.index]
    missing = [m for m in models if m not in communities]
    if missing:
        raise UserError(f"communities has no entry for model(s) {missing}")
    fam = resolve_families(models, families)
    values = W.to_numpy(dtype=float)
    graph = nx.Graph()
    graph.add_nodes_from(models)
    rows, cols = np.triu_indices(len(models), k=1)
    for i, j in zip(rows, cols, strict=True):
        weight = values[i, j]
        if np.isfinite(weight) and weight > min_weight:
            graph.add_edge(models[i], models[j], weight=float(weight))
    positions = nx.spring_layout(graph, weight="weight", seed=seed)
    fig, ax = figure_and_axes(ax, 4.2, 3.4)

    weights = np.array([d["weight"] for *_, d in graph.edges(data=True)])
    if weights.size:
        span = np.ptp(weights) or 1.0
        widths = 0.4 + 3.6 * (weights - weights.min()) / span
        nx.draw_networkx_edges(graph, positions, ax=ax, width=widths, edge_color="0.55", alpha=0.7)
    community_ids = sorted({communities[m] for m in models}, key=str)
    colors = dict(zip(community_ids, community_colors(len(community_ids)), strict=True))
    shapes = family_markers(fam.values())
    for family in sorted(set(fam.values()), key=family_sort_key):
        nodes = [m for m in models if fam[m] == family]
        nx.draw_networkx_nodes(
            graph,
            positions,
            nodelist=nodes,
            ax=ax,
            **{"node_size": 160, "node_shape": shapes[family], "edgecolors": "black",
               "linewidths": 0.8, "node_color": [colors[communities[m]] for m in nodes],
               **kwargs},
        )
    label_pos = {m: (x, y - 0.09) for m, (x, y) in positions.items()}
    nx.draw_networkx_labels(
        graph,
        label_pos,
        labels={m: names.model_label(m) for m in models},
        ax=ax,
        font_size=matplotlib.rcParams["font.size"] * 0.75,
        verticalalignment="top",
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5},
    )
    handles = [
        Patch(facecolor=colors[c], edgecolor="black", label=f"community {c}") for c in community_ids
    ]
    handles += [
        Line2D(
            [],
            [],
            ls="",
            marker=shapes[f],
            markerfacecolor="white",
            markeredgecolor="black",
            markersize=6,
            label=f,
        )
        for f in sorted(shapes, key=family_sort_key)
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_axis_off()
    ax.margins(0.12)
    if title:
        ax.set_title(names.title_text(title))
    return ax


def plot_embedding(
    coords: pd.DataFrame,
    families: Mapping[str, str] | None = None,
    ax: Axes | None = None,
    *,
    annotate: bool = True,
    equal_aspect: bool = True,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    **kwargs,
) -> Axes:
    """Models placed by a 2-D embedding (MDS, PCA); colour and marker by family.

    coords: a DataFrame (index = models) or an [n, 2] NumPy array with `labels`. Axis labels
    are the column names (e.g. "MDS 1"); equal aspect by default because MDS distances mean
    the same along both axes. Further keywords go to `Axes.scatter`. Returns the Axes.
    """
    coords = as_frame(coords, "coords", labels,
                      None if isinstance(coords, pd.DataFrame) else ["dimension 1", "dimension 2"])
    if coords.shape[1] != 2:
        raise UserError(f"coords must have exactly 2 columns, got {list(coords.columns)}")
    models = [str(m) for m in coords.index]
    fam = resolve_families(models, families)
    palette, shapes = family_palette(fam.values()), family_markers(fam.values())
    fig, ax = figure_and_axes(ax, 3.9, 3.0)
    xy = coords.to_numpy(dtype=float)
    for family in sorted(palette, key=family_sort_key):
        rows = [k for k, m in enumerate(models) if fam[m] == family]
        ax.scatter(
            xy[rows, 0],
            xy[rows, 1],
            **{"s": 28, "marker": shapes[family], "color": palette[family],
               "edgecolors": "black", "linewidths": 0.4, "label": family, "zorder": 3,
               **kwargs},
        )
    ax.set_xlabel(str(coords.columns[0]))
    ax.set_ylabel(str(coords.columns[1]))
    if equal_aspect:
        ax.set_aspect("equal", adjustable="datalim")
    ax.margins(0.15)
    if annotate:
        annotate_points(ax, xy, [names.model_label(m) for m in models])
    ax.legend(
        title="family", frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0
    )
    if title:
        ax.set_title(names.title_text(title))
    return ax


def _pairs_from(per_image, value: str) -> dict[tuple[str, str], np.ndarray]:
    if isinstance(per_image, pd.DataFrame):
        table = require_frame(per_image, "per_image", ["model_a", "model_b", value])
        return {
            (str(a), str(b)): group[value].to_numpy(dtype=float)
            for (a, b), group in table.groupby(["model_a", "model_b"], sort=False)
        }
    if isinstance(per_image, Mapping) and per_image:
        pairs = {}
        for key, values in per_image.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise UserError(f"per_image keys must be (model_a, model_b) tuples, got {key!r}")
            pairs[(str(key[0]), str(key[1]))] = np.asarray(values, dtype=float).ravel()
        return pairs
    raise UserError(
        "per_image must be a non-empty dict {(model_a, model_b): values} or a DataFrame with "
        f"columns model_a, model_b, {value}; got {type(per_image).__name__}"
    )


def plot_similarity_histograms(
    per_image,
    ax: Axes | None = None,
    *,
    value: str = "similarity",
    bins: int = 20,
    value_range: tuple[float, float] | None = None,
    xlabel: str = "per-image similarity",
    **kwargs,
) -> Figure | Axes:
    """Distribution of per-image similarity for each model pair.

    Without `ax`: small multiples, one panel per pair with its mean marked (shared x-axis);
    returns the Figure. With `ax`: all pairs overlaid as step histograms on that Axes
    (readable up to ~6 pairs); returns the Axes.
    NaN values (degenerate maps) are left out and counted in each panel's title.
    Further keywords go to `Axes.hist` (e.g. `color`, `alpha`, `histtype`).
    """
    pairs = _pairs_from(per_image, value)
    finite_all = np.concatenate([v[np.isfinite(v)] for v in pairs.values()])
    if finite_all.size == 0:
        raise UserError("per_image holds no finite similarity values")
    lo, hi = value_range or (float(finite_all.min()), float(finite_all.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
    if ax is not None:
        fig, ax = figure_and_axes(ax, 0, 0)
        colors = categorical_colors(len(pairs))
        for (pair, values), color in zip(pairs.items(), colors, strict=True):
            ax.hist(
                values[np.isfinite(values)],
                bins=edges,
                **{"histtype": "step", "color": color, "linewidth": 1.2,
                   "label": f"{names.model_label(pair[0])} vs {names.model_label(pair[1])}",
                   **kwargs},
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel("images")
        ax.legend(frameon=False, fontsize="x-small")
        return ax
    ncols = min(len(pairs), 4 if len(pairs) > 4 else len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig = new_figure(min(PAGE_WIDTH_IN, 1.75 * ncols + 0.3), 1.45 * nrows + 0.3)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, squeeze=False)).ravel()
    for panel, (pair, values) in zip(axes, pairs.items(), strict=False):
        finite = values[np.isfinite(values)]
        panel.hist(finite, bins=edges, **{"color": "#0072B2", "alpha": 0.85, **kwargs})
        if finite.size:
            panel.axvline(finite.mean(), color="#D55E00", lw=1.0, ls="--")
        dropped = values.size - finite.size
        note = f" ({dropped} NaN)" if dropped else ""
        panel.set_title(f"{names.model_label(pair[0])}\nvs {names.model_label(pair[1])}{note}",
                        fontsize="small")
        panel.tick_params(labelsize="small")
    for k, panel in enumerate(axes):
        if k >= len(pairs):
            panel.set_visible(False)
        elif k + ncols >= len(pairs):  # nothing drawn below: this panel carries the x ticks
            panel.xaxis.set_tick_params(labelbottom=True)
    fig.supxlabel(xlabel)
    fig.supylabel("images")
    return fig
