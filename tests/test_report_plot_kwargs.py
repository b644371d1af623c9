"""Extra keywords reach the artist the plot draws with (as seaborn passes them on)."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xaicompare.report import (
    plot_community_graph,
    plot_localisation,
    plot_retention_curves,
    plot_similarity_histograms,
)


def _rgba(color) -> tuple:
    return tuple(np.round(mcolors.to_rgba(color), 6))


def test_community_graph_passes_keywords_to_the_nodes():
    W = pd.DataFrame(np.ones((3, 3)) - np.eye(3), index=list("xyz"), columns=list("xyz"))
    default = plot_community_graph(W, dict.fromkeys("xyz", 0))
    ax = plot_community_graph(W, dict.fromkeys("xyz", 0), node_size=777, alpha=0.3)
    sizes = [c.get_sizes() for c in ax.collections if isinstance(c, PathCollection)]
    assert sizes and all(np.allclose(s, 777) for s in sizes)
    assert all(c.get_alpha() == 0.3 for c in ax.collections if isinstance(c, PathCollection))
    default_sizes = [c.get_sizes() for c in default.collections if isinstance(c, PathCollection)]
    assert not np.allclose(np.concatenate(default_sizes), 777)


def test_retention_curves_pass_keywords_to_every_line():
    table = pd.DataFrame(
        [(m, "fog", s, 1 - 0.1 * s) for m in ("a", "b") for s in range(6)],
        columns=["model", "corruption", "severity", "retention"],
    )
    fig = plot_retention_curves(table, alpha=0.4, markersize=9)
    lines = [line for line in fig.axes[0].lines if line.get_label() in ("a", "b")]
    assert len(lines) == 2
    assert all(line.get_alpha() == 0.4 and line.get_markersize() == 9 for line in lines)
    host = Figure()
    (ax,) = [host.subplots()]
    plot_retention_curves(table, axes=ax, color="magenta")
    lines = [line for line in ax.lines if line.get_label() in ("a", "b")]
    assert {_rgba(line.get_color()) for line in lines} == {_rgba("magenta")}


def test_localisation_passes_keywords_to_the_bars():
    table = pd.DataFrame(
        [(m, 0.5, 0.4) for m in ("a", "b")], columns=["model", "pointing_game", "mass_in_mask"]
    )
    fig = plot_localisation(table, color="magenta", hatch="//")
    for panel in fig.axes[:2]:
        bars = [p for p in panel.patches if isinstance(p, Rectangle)]
        assert len(bars) == 2
        assert all(_rgba(p.get_facecolor()) == _rgba("magenta") for p in bars)
        assert all(p.get_hatch() == "//" for p in bars)


def test_similarity_histograms_pass_keywords_to_hist():
    rng = np.random.default_rng(0)
    per_image = {("a", "b"): rng.uniform(size=20), ("a", "c"): rng.uniform(size=20)}
    fig = plot_similarity_histograms(per_image, bins=5, color="magenta")
    for panel in fig.axes:
        assert panel.patches
        assert all(_rgba(p.get_facecolor())[:3] == _rgba("magenta")[:3] for p in panel.patches)
    host = Figure()
    ax = host.subplots()
    plot_similarity_histograms(per_image, ax=ax, linewidth=3.5)
    assert len(ax.patches) == 2  # one step outline per pair
    assert all(p.get_linewidth() == 3.5 for p in ax.patches)
