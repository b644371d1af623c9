"""Figure functions on small synthetic data: files, labels, counts, and drawing into given Axes."""

from __future__ import annotations

import re

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from scipy import stats
from scipy.cluster import hierarchy
from scipy.spatial.distance import pdist, squareform

from xaicompare.errors import UserError
from xaicompare.report import (
    FAMILY_COLORS,
    plot_community_graph,
    plot_cue_conflict,
    plot_dendrogram,
    plot_dissimilarity_heatmap,
    plot_embedding,
    plot_gain_vs_diversity,
    plot_interval_heatmap,
    plot_localisation,
    plot_matrix_heatmap,
    plot_reliability_diagram,
    plot_retention_curves,
    plot_similarity_histograms,
    save_figure,
)

MODELS = ["resnet18", "convnext_t", "vit_t", "deit_t", "mixer_s"]
FAMILIES = {
    "resnet18": "cnn",
    "convnext_t": "cnn",
    "vit_t": "transformer",
    "deit_t": "transformer",
    "mixer_s": "mlp",
}


@pytest.fixture
def distances():
    rng = np.random.default_rng(0)
    condensed = pdist(rng.normal(size=(len(MODELS), 3)))
    D = pd.DataFrame(squareform(condensed), index=MODELS, columns=MODELS)
    return D, hierarchy.linkage(condensed, "average")


def _same_color(a, b) -> bool:
    return np.allclose(mcolors.to_rgba(a), mcolors.to_rgba(b))


def test_save_figure_writes_each_format(tmp_path, distances):
    fig = plot_dissimilarity_heatmap(distances[0], FAMILIES)
    paths = save_figure(fig, tmp_path / "sub" / "heat", formats=("png", "pdf", "svg"))
    assert [p.suffix for p in paths] == [".png", ".pdf", ".svg"]
    heads = {p.suffix: p.read_bytes()[:400] for p in paths}
    assert heads[".png"].startswith(b"\x89PNG")
    assert heads[".pdf"].startswith(b"%PDF")
    assert b"<svg" in heads[".svg"]
    with pytest.raises(UserError, match="unknown figure format"):
        save_figure(fig, tmp_path / "x", formats=("tiff",))


def test_dissimilarity_heatmap_order_mask_annotations_and_family_strips(distances):
    D, Z = distances
    order = [MODELS[i] for i in hierarchy.leaves_list(Z)]
    ax = plot_dissimilarity_heatmap(D, FAMILIES, order=order, title="t")
    assert [t.get_text() for t in ax.get_yticklabels()] == order
    assert [t.get_text() for t in ax.get_xticklabels()] == order
    shown = ax.collections[0].get_array()  # vector cells (pcolormesh), rows top down
    assert shown.mask.diagonal().all() and not shown.mask[~np.eye(len(order), dtype=bool)].any()
    np.testing.assert_allclose(shown.data[0, 1], D.loc[order[0], order[1]])
    # one number per off-diagonal cell, formatted from the reordered matrix
    texts = {t.get_text() for t in ax.texts}
    assert len(ax.texts) == len(order) * (len(order) - 1)
    assert f"{D.loc[order[0], order[1]]:.2f}" in texts
    strips = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(strips) == 2 * len(order)
    assert _same_color(strips[0].get_facecolor(), FAMILY_COLORS[FAMILIES[order[0]]])
    assert _same_color(ax.get_yticklabels()[0].get_color(), FAMILY_COLORS[FAMILIES[order[0]]])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["cnn", "transformer", "mlp"]


def test_heatmap_draws_into_given_axes_and_rejects_bad_order(distances):
    D, _ = distances
    host = Figure()
    left, right = host.subplots(1, 2)
    assert plot_dissimilarity_heatmap(D, ax=right, annot=False) is right
    assert right.collections and not left.collections and not right.texts
    with pytest.raises(UserError, match="order"):
        plot_dissimilarity_heatmap(D, order=MODELS[:-1])
    with pytest.raises(UserError, match="square"):
        plot_dissimilarity_heatmap(D.iloc[:, :-1])


def test_dendrogram_leaf_order_matches_scipy_and_labels_are_family_coloured(distances):
    D, Z = distances
    ax = plot_dendrogram(Z, MODELS, FAMILIES)
    expected = hierarchy.dendrogram(Z, labels=MODELS, no_plot=True, orientation="right")["ivl"]
    ticks = ax.get_yticklabels()
    assert [t.get_text() for t in ticks] == expected
    for tick in ticks:
        assert _same_color(tick.get_color(), FAMILY_COLORS[FAMILIES[tick.get_text()]])
    assert ax.get_xlabel() == "dissimilarity"
    with pytest.raises(UserError, match="labels"):
        plot_dendrogram(Z, MODELS[:3])
    from xaicompare.clustering import cluster

    tree = cluster(D, method="average")  # a Tree carries its linkage and labels
    from_tree = plot_dendrogram(tree, families=FAMILIES)
    assert [t.get_text() for t in from_tree.get_yticklabels()] == hierarchy.dendrogram(
        tree.linkage, labels=tree.labels, no_plot=True, orientation="right")["ivl"]


def test_community_graph_nodes_edges_and_colours():
    W = pd.DataFrame(
        [[0, 0.9, 0.1, 0.0], [0.9, 0, 0.2, 0.0], [0.1, 0.2, 0, 0.8], [0.0, 0.0, 0.8, 0]],
        index=list("abcd"),
        columns=list("abcd"),
    )
    communities = {"a": 0, "b": 0, "c": 1, "d": 1}
    families = {"a": "cnn", "b": "transformer", "c": "cnn", "d": "mlp"}
    host = Figure()
    ax = host.subplots()
    assert plot_community_graph(W, communities, families, ax=ax, seed=1) is ax
    nodes = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in nodes) == 4
    assert len(nodes) == 3  # one marker shape per family
    edges = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert sum(len(c.get_segments()) for c in edges) == 4  # the four positive weights
    widths = edges[0].get_linewidths()
    assert max(widths) > min(widths)
    # same community -> same fill: the two cnn nodes a (0) and c (1) differ
    cnn_nodes = nodes[0].get_facecolors()
    assert not np.allclose(cnn_nodes[0], cnn_nodes[1])
    with pytest.raises(UserError, match="communities"):
        plot_community_graph(W, {"a": 0}, families)


def test_community_graph_layout_is_seeded():
    W = pd.DataFrame(np.ones((3, 3)) - np.eye(3), index=list("xyz"), columns=list("xyz"))
    first = plot_community_graph(W, dict.fromkeys("xyz", 0), seed=3)
    again = plot_community_graph(W, dict.fromkeys("xyz", 0), seed=3)
    np.testing.assert_allclose(
        first.collections[-1].get_offsets(), again.collections[-1].get_offsets()
    )


def test_embedding_points_and_axis_labels():
    coords = pd.DataFrame(np.arange(10.0).reshape(5, 2), index=MODELS, columns=["MDS 1", "MDS 2"])
    ax = plot_embedding(coords, FAMILIES)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("MDS 1", "MDS 2")
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    np.testing.assert_allclose(np.sort(points[:, 0]), coords["MDS 1"].to_numpy())
    assert {t.get_text() for t in ax.texts} == set(MODELS)


def test_similarity_histograms_small_multiples_and_overlay():
    rng = np.random.default_rng(1)
    per_image = {("a", "b"): rng.uniform(size=30), ("a", "c"): np.r_[rng.uniform(size=9), np.nan]}
    fig = plot_similarity_histograms(per_image, bins=10)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2
    counts = [sum(p.get_height() for p in ax.patches) for ax in panels]
    assert counts == [30, 9]
    assert "1 NaN" in panels[1].get_title()
    long = pd.DataFrame(
        {"model_a": ["a"] * 4 + ["b"] * 4, "model_b": ["c"] * 8, "similarity": np.linspace(0, 1, 8)}
    )
    host = Figure()
    ax = host.subplots()
    assert plot_similarity_histograms(long, ax=ax) is ax
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a vs c", "b vs c"]


def test_matrix_heatmap_centres_diverging_map():
    M = pd.DataFrame([[-0.5, 0.0], [0.25, 1.0]], index=["m1", "m2"], columns=["m1", "m2"])
    ax = plot_matrix_heatmap(M, "kappa", center=0.0)
    image = ax.collections[0]
    assert image.norm(0.0) == pytest.approx(0.5)
    assert image.cmap.name.startswith("RdBu_r")
    assert ax.get_title() == "kappa"


def test_interval_heatmap_writes_intervals_and_checks_them():
    mean = pd.DataFrame([[0.5, 0.2]], index=["a"], columns=["b", "c"])
    ax = plot_interval_heatmap(mean, mean - 0.1, mean + 0.3)
    assert "0.50\n[0.40, 0.80]" in [t.get_text() for t in ax.texts]
    with pytest.raises(UserError, match="contain"):
        plot_interval_heatmap(mean, mean + 0.1, mean + 0.3)


def test_gain_vs_diversity_title_has_scipy_spearman():
    rng = np.random.default_rng(2)
    table = pd.DataFrame(
        {
            "diversity": rng.uniform(size=9),
            "gain": rng.normal(size=9),
            "label": [f"e{i}" for i in range(9)],
        }
    )
    ax = plot_gain_vs_diversity(table)
    rho = stats.spearmanr(table["diversity"], table["gain"]).statistic
    assert re.search(r"ρ = (-?\d\.\d\d)", ax.get_title()).group(1) == f"{rho:.2f}"
    assert "n = 9" in ax.get_title()
    with pytest.raises(UserError, match="gain"):
        plot_gain_vs_diversity(table.drop(columns="gain"))


def test_retention_curves_one_panel_per_corruption_one_line_per_model():
    rows = [
        (m, c, s, 1 - 0.1 * s) for m in ("a", "b", "ens") for c in ("fog", "blur") for s in range(6)
    ]
    rows = [r for r in rows if not (r[0] == "b" and r[2] == 0)]  # b has no clean row
    table = pd.DataFrame(rows, columns=["model", "corruption", "severity", "retention"])
    fig = plot_retention_curves(table, ensembles=["ens"])
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["blur", "fog"]
    for ax in panels:
        model_lines = [line for line in ax.lines if line.get_label() in ("a", "b", "ens")]
        assert len(model_lines) == 3
        assert [int(t) for t in ax.get_xticks()] == [0, 1, 2, 3, 4, 5]
    ens = next(line for line in panels[0].lines if line.get_label() == "ens")
    assert ens.get_linewidth() > 2
    b_line = next(line for line in panels[0].lines if line.get_label() == "b")
    np.testing.assert_allclose(b_line.get_xdata(), range(6))  # anchored at the clean point
    np.testing.assert_allclose(b_line.get_ydata(), 1 - 0.1 * np.arange(6))
    host = Figure()
    with pytest.raises(UserError, match="corruption"):
        plot_retention_curves(table, axes=host.subplots())


def test_reliability_diagram_ece_matches_hand_computation():
    bins = pd.DataFrame(
        {
            "bin": range(4),
            "confidence": [0.2, 0.4, 0.6, 0.9],
            "accuracy": [0.1, 0.5, 0.5, 0.7],
            "count": [10, 0, 30, 60],
        }
    )
    ax = plot_reliability_diagram(bins)
    ece = (10 * 0.1 + 30 * 0.1 + 60 * 0.2) / 100
    assert ax.get_title() == f"ECE = {ece:.3f}"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("confidence", "accuracy")


def test_localisation_bars_per_model_and_method():
    table = pd.DataFrame(
        [(m, meth, 0.5, 0.4, 0.2) for m in ("a", "b", "c") for meth in ("gradcam", "ig")],
        columns=["model", "method", "pointing_game", "mass_in_mask", "mask_area"],
    )
    fig = plot_localisation(table)
    pointing, share = fig.axes[:2]
    assert len(pointing.patches) == 6 and len(share.patches) == 6
    assert [t.get_text() for t in pointing.get_xticklabels()] == ["a", "b", "c"]
    assert any(np.allclose(line.get_ydata(), 0.2) for line in share.lines)
    heights = sorted(p.get_height() for p in share.patches)
    assert heights == [0.4] * 6
    legacy = plot_localisation(table.rename(columns={"mass_in_mask": "mask_share"}))
    assert len(legacy.axes[1].patches) == 6


def test_cue_conflict_bars_stack_shape_texture_other_per_model():
    from xaicompare.diversity import texture_reliance

    labels, texture = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0])
    predictions = np.stack([labels, texture, np.array([0, 2, 1, 1])])
    table = texture_reliance(predictions, labels, texture, 4, 4, ["shape", "texture", "mixed"])
    ax = plot_cue_conflict(table)
    assert len(ax.patches) == 3 * 3  # shape / texture / other for each model
    height = {t.get_text(): t.get_position()[1] for t in ax.get_yticklabels()}
    assert height["shape"] > height["texture"] > height["mixed"]  # table order, top down
    widths = [p.get_width() for p in ax.patches]
    assert widths[:3] == [1.0, 0.0, 0.25]  # shape decisions
    assert widths[3:6] == [0.0, 1.0, 0.25]  # texture decisions
    for row in range(3):  # the three segments of every bar add up to all conflict images
        assert sum(widths[row::3]) == pytest.approx(1.0)
    assert ax.get_xlabel() == "share of cue-conflict images"


def test_every_figure_saves_as_png_pdf_svg(tmp_path, distances):
    D, Z = distances
    figures = {
        "dendrogram": plot_dendrogram(Z, MODELS, FAMILIES),
        "embedding": plot_embedding(
            pd.DataFrame(np.eye(5, 2), index=MODELS, columns=["PC 1", "PC 2"]), FAMILIES
        ),
        "graph": plot_community_graph(1 - D, dict.fromkeys(MODELS, 0), FAMILIES),
    }
    for name, fig in figures.items():
        for path in save_figure(fig, tmp_path / name):
            assert path.stat().st_size > 1000, path


def test_gain_vs_diversity_takes_ensemble_table_as_it_is():
    from xaicompare.diversity import ensemble_table

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(4, 30))
    labels = rng.integers(0, 3, 30)
    table = ensemble_table(probs, labels, ["a", "b", "c", "d"], k=[2])
    ax = plot_gain_vs_diversity(table)
    points = ax.collections[0].get_offsets()
    np.testing.assert_allclose(points[:, 0], table["zero_one_diversity"])
    np.testing.assert_allclose(points[:, 1], table["accuracy_gain"])
    assert any("a + b" in t.get_text() for t in ax.texts)  # as a label or in the key
