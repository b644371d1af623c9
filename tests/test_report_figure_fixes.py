"""The figure defects of issue #24, each checked on the drawn artists: text bounding boxes
from the renderer, colours of the encodings, legend against data, SVG text, vector cells."""

from __future__ import annotations

import io
import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from scipy.cluster import hierarchy
from scipy.spatial.distance import pdist, squareform

import xaicompare.attribution  # noqa: F401  (registers the methods' display names)
from xaicompare.report import (
    display_names,
    plot_atlas,
    plot_community_graph,
    plot_dendrogram,
    plot_dissimilarity_heatmap,
    plot_gain_vs_diversity,
    plot_matrix_heatmap,
    plot_reliability_diagram,
    save_figure,
    style,
)
from xaicompare.report.atlas import SCALE_LABEL, human_image_name
from xaicompare.report.labels import renderer_of
from xaicompare.report.style import (
    CATEGORICAL,
    FAMILY_COLORS,
    WRONG_COLOR,
    categorical_colors,
    community_colors,
    contrast_on_white,
    family_palette,
)

MODELS = ["resnet18", "convnext_t", "vit_t", "deit_t", "mixer_s"]
FAMILIES = {"resnet18": "cnn", "convnext_t": "cnn", "vit_t": "transformer",
            "deit_t": "transformer", "mixer_s": "mlp"}


def _boxes(texts, renderer):
    return [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]


def _any_overlap(boxes) -> bool:
    return any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


@pytest.mark.parametrize("n_models", [3, 7])
def test_gain_vs_diversity_labels_never_overlap(n_models):
    """Crowded ensembles (7 models: 21 pairs in a small cloud) get labels whose measured
    bounding boxes are disjoint, as names or as numbers with a key."""
    rng = np.random.default_rng(n_models)
    names = [f"model_{k}" for k in range(n_models)]
    pairs = list(itertools.combinations(names, 2))
    table = pd.DataFrame({"diversity": rng.uniform(0.10, 0.14, len(pairs)),
                          "gain": rng.uniform(-0.01, 0.01, len(pairs)),
                          "label": [f"{a} + {b}" for a, b in pairs]})
    ax = plot_gain_vs_diversity(table)
    fig = ax.figure
    fig.draw_without_rendering()
    renderer = renderer_of(ax)
    labels = [t for t in ax.texts]
    assert labels, "the points are labelled"
    assert not _any_overlap(_boxes(labels, renderer))
    shown = "\n".join(t.get_text() for t in labels)
    assert all(f"{a} + {b}" in shown for a, b in pairs)  # every ensemble is named somewhere


def test_reliability_legend_is_beside_the_lines_and_colours_are_distinct():
    rows = []
    for k in range(7):
        for b, conf in enumerate(np.linspace(0.05, 0.95, 10)):
            rows.append({"model": f"m{k}", "bin": b, "confidence": conf,
                         "accuracy": np.clip(conf + 0.03 * (k - 3), 0, 1), "count": 10})
    ax = plot_reliability_diagram(pd.DataFrame(rows))
    ax.figure.draw_without_rendering()
    renderer = renderer_of(ax)
    legend = ax.get_legend().get_window_extent(renderer)
    for line in ax.get_lines():  # no data point of any line under the legend
        points = ax.transData.transform(line.get_xydata())
        assert not any(legend.contains(x, y) for x, y in points), line.get_label()
    model_lines = ax.get_lines()[1:]
    colours = [to_hex(line.get_color()) for line in model_lines]
    assert len(set(colours)) == 7
    assert min(contrast_on_white(c) for c in colours) > 2.0  # no yellow on white
    styles = {(line.get_linestyle(), line.get_marker()) for line in model_lines}
    assert len(styles) == 7  # lines stay apart even where colours are hard to tell


def test_palettes_no_yellow_and_extra_families_readable_as_text():
    assert all(contrast_on_white(c) > 2.0 for c in CATEGORICAL)
    assert "#F0E442" not in [c.upper() for c in categorical_colors(10)]
    palette = family_palette(["cnn", "transformer", "entry_a", "entry_b", "entry_c", "entry_d"])
    # unknown "families" (notebook 01 colours by entry method) are tick-label text colours
    assert min(contrast_on_white(palette[f]) for f in palette if f.startswith("entry")) >= 3.0
    assert len(set(palette.values())) == len(palette)


def test_community_colours_are_not_family_colours():
    W = pd.DataFrame(np.ones((4, 4)) - np.eye(4), index=list("abcd"), columns=list("abcd"))
    ax = plot_community_graph(W, dict.fromkeys("abcd", 0), {"a": "cnn", "b": "cnn",
                                                           "c": "transformer", "d": "mlp"})
    fills = {to_hex(c) for coll in ax.collections if hasattr(coll, "get_facecolors")
             for c in coll.get_facecolors() if len(coll.get_offsets())}
    family = {to_hex(c) for c in FAMILY_COLORS.values()}
    assert fills and not fills & family  # a single community is not "cnn" blue
    assert not {c.lower() for c in community_colors(8)} & {c.lower() for c in family}


def test_wrong_prediction_mark_is_not_a_family_colour():
    image = np.random.default_rng(0).uniform(size=(3, 16, 16))
    maps = {m: {"gradcam": np.random.default_rng(1).uniform(size=(16, 16))}
            for m in ("vit", "resnet")}
    fig = plot_atlas(image, maps, {"vit": ("cat", 0.9, False), "resnet": ("cat", 0.9, True)},
                     {"vit": "transformer", "resnet": "cnn"})
    wrong = next(ax.yaxis.label for ax in fig.axes if "wrong" in ax.yaxis.label.get_text())
    assert wrong.get_fontweight() == "bold"
    frames = {to_hex(c) for c in family_palette(["cnn", "transformer", "mlp", "hybrid"]).values()}
    assert to_hex(wrong.get_color()) not in frames and to_hex(WRONG_COLOR) not in frames


def test_atlas_colour_bar_label_is_words_and_titles_use_display_names():
    image = np.random.default_rng(0).uniform(size=(3, 16, 16))
    maps = {"resnet18.a1_in1k": {"kernelshap": np.random.default_rng(1).normal(size=(16, 16))}}
    with display_names(models={"resnet18.a1_in1k": "ResNet-18"}):
        fig = plot_atlas(image, maps, title="resnet18.a1_in1k on kernelshap")
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    note = fig.get_supxlabel().replace("\n", " ")  # once, under the colour bars
    assert "scaled to the 99th percentile of |map|" in note and SCALE_LABEL in note
    assert not any("÷" in bar.xaxis.label.get_text() for bar in bars)
    fig.draw_without_rendering()
    renderer = renderer_of(fig.axes[0])
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    assert not _any_overlap(_boxes([*titles, *(b.xaxis.label for b in bars)], renderer))
    texts = [ax.get_title() for ax in fig.axes] + [fig.get_suptitle()]
    assert "KernelSHAP" in texts and "ResNet-18 on KernelSHAP" in texts
    assert any("ResNet-18" in ax.yaxis.label.get_text() for ax in fig.axes)


def test_human_image_names_for_titles_and_files():
    assert human_image_name("n01440764/n01440764_tench.JPEG") == "tench"
    assert human_image_name("n01443537_goldfish.JPEG") == "goldfish"
    assert human_image_name("test/000004") == "000004"


def test_error_consistency_nan_cells_hatched_with_legend_and_no_negative_zero():
    M = pd.DataFrame([[1.0, -0.001, np.nan], [-0.001, 1.0, 0.4], [np.nan, 0.4, 1.0]],
                     index=list("abc"), columns=list("abc"))
    ax = plot_matrix_heatmap(M, center=0.0)
    texts = [t.get_text() for t in ax.texts]
    assert "-0.00" not in texts and texts.count("0.00") == 2
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert sorted((p.get_x(), p.get_y()) for p in hatched) == [(-0.5, 1.5), (1.5, -0.5)]
    legends = [a.get_legend() for a in ax.figure.axes if a.get_legend() is not None]
    assert any("NaN" in t.get_text() for lg in legends for t in lg.get_texts())


def test_ig_speckle_on_a_224px_photo_is_visible_after_display_smoothing():
    """Pixel-wise signed noise plus a weak consistent blob: smoothing for display makes the
    blob carry the overlay, where unsmoothed the speckle swamps it."""
    rng = np.random.default_rng(0)
    side = 224
    yy, xx = np.mgrid[:side, :side]
    blob = ((yy - 112) ** 2 + (xx - 112) ** 2 < 40 ** 2).astype(float)
    saliency = rng.normal(size=(side, side)) + 0.6 * blob
    image = np.full((3, side, side), 0.5)

    def blob_contrast(smooth):
        fig = plot_atlas(image, {"m": {"integrated_gradients": saliency}}, smooth=smooth)
        overlay = fig.axes[1].images[1].get_array()
        alpha = overlay[..., 3]
        return alpha[blob > 0].mean() - alpha[blob == 0].mean(), fig

    raw, _ = blob_contrast(None)
    smoothed, fig = blob_contrast("auto")
    assert smoothed > 3 * raw and smoothed > 0.15
    assert "blurred for display" in fig.get_supxlabel()


def test_svg_keeps_text_as_text_and_heatmap_cells_as_vectors(tmp_path):
    D = pd.DataFrame(squareform(pdist(np.random.default_rng(0).normal(size=(5, 3)))),
                     index=MODELS, columns=MODELS)
    with style():
        ax = plot_dissimilarity_heatmap(D, FAMILIES, cbar=False)  # (a colour bar's gradient
    assert isinstance(ax.collections[0], QuadMesh) and not ax.images  # is a raster strip)
    svg, pdf = save_figure(ax, tmp_path / "heat", formats=("svg", "pdf"))
    text = svg.read_text()
    assert "<text" in text and "resnet18" in text and "<image" not in text
    assert b"/FontFile2" in pdf.read_bytes()  # TrueType embedded (fonttype 42)


def test_user_figure_two_subplots_dendrogram_and_heatmap_do_not_collide():
    rng = np.random.default_rng(0)
    condensed = pdist(rng.normal(size=(5, 3)))
    D = pd.DataFrame(squareform(condensed), index=MODELS, columns=MODELS)
    Z = hierarchy.linkage(condensed, "average")
    with matplotlib.rc_context({"font.size": 14, "ytick.labelsize": 14}):
        fig = Figure(figsize=(9, 4), layout="constrained")
        left, right = fig.subplots(1, 2)
        tree_ax = plot_dendrogram(Z, MODELS, FAMILIES, ax=left)
        heat_ax = plot_dissimilarity_heatmap(np.asarray(D), labels=MODELS, families=FAMILIES,
                                             ax=right, square=True, linewidths=0.5,
                                             annot=False)
    assert tree_ax is left and heat_ax is right
    assert right.collections[0].get_linewidth()[0] == pytest.approx(0.5)  # passed through
    fig.draw_without_rendering()
    renderer = renderer_of(left)
    assert all(t.get_fontsize() == 14 for t in left.get_yticklabels())  # rcParams respected
    left_texts = _boxes([*left.get_yticklabels(), *left.get_xticklabels(), left.xaxis.label],
                        renderer)
    right_texts = _boxes([*right.get_yticklabels(), *right.get_xticklabels()], renderer)
    if right.get_legend() is not None:
        right_texts.append(right.get_legend().get_window_extent(renderer))
    assert not any(a.overlaps(b) for a in left_texts for b in right_texts)


def test_numpy_input_and_style_context_leave_rcparams_alone():
    before = matplotlib.rcParams["font.size"]
    with style():
        assert matplotlib.rcParams["font.size"] == 8
        ax = plot_matrix_heatmap(np.array([[0.1, 0.2], [0.3, 0.4]]), xticklabels=["x", "y"],
                                 yticklabels=["p", "q"])
    assert matplotlib.rcParams["font.size"] == before
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["p", "q"]


def test_display_names_in_heatmap_ticks_and_method_defaults():
    D = pd.DataFrame(np.ones((2, 2)) - np.eye(2), index=["a1", "b2"], columns=["a1", "b2"])
    with display_names(models={"a1": "Model A"}):
        ax = plot_dissimilarity_heatmap(D, title="a1 / kernelshap")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Model A", "b2"]
    assert ax.get_title() == "Model A / KernelSHAP"
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png")
    assert to_rgb("white")  # drawn without error


def test_heatmap_layout_is_stable_across_saves_at_default_rcparams(tmp_path):
    """The family legend once made constrained layout shrink an equal-aspect matrix at every
    draw until it collapsed (10 pt default fonts, 5 models)."""
    D = pd.DataFrame(squareform(pdist(np.random.default_rng(0).normal(size=(5, 3)))),
                     index=MODELS, columns=MODELS)
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        ax = plot_dissimilarity_heatmap(D, FAMILIES)
        sizes = []
        for fmt in ("png", "pdf", "svg", "png"):
            save_figure(ax, tmp_path / "heat", formats=(fmt,))
            sizes.append(ax.get_position().width)
    assert min(sizes) > 0.8 * max(sizes) and min(sizes) > 0.2
