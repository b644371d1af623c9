"""The paper figure set: every figure at column and page width, in PDF, SVG and PNG, with
the exact width a journal asks for, editable text, and nothing drawn over anything."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image
from scipy.cluster import hierarchy
from scipy.spatial.distance import pdist, squareform

import xaicompare.attribution  # noqa: F401  (registers the methods' display names)
from xaicompare.errors import UserError
from xaicompare.report.figures_paper import (
    PAPER_FIGURES,
    PaperInputs,
    plot_family_tests,
    plot_similarity_with_dendrogram,
    write_paper_figures,
)
from xaicompare.report.style import style

MODELS = ["resnet18", "convnext_t", "vit_t", "deit_t", "mixer_s"]
FAMILIES = dict(zip(MODELS, ["cnn", "cnn", "transformer", "transformer", "mlp"], strict=True))


def _inputs() -> PaperInputs:
    rng = np.random.default_rng(0)
    condensed = pdist(rng.normal(size=(5, 3)))
    D = pd.DataFrame(squareform(condensed), index=MODELS, columns=MODELS)
    tests = pd.DataFrame({"method": ["gradcam"] * 2 + ["kernelshap"] * 2,
                          "metric": "cosine", "test": ["permanova", "permdisp"] * 2,
                          "p_value": [0.0667, 0.4, 0.2, 0.9], "n_permutations": 15.0})
    kappa = pd.DataFrame(rng.uniform(-0.2, 0.8, (5, 5)), index=MODELS, columns=MODELS)
    pairs = list(itertools.combinations(MODELS, 2))
    ensembles = pd.DataFrame({"members": [f"{a} + {b}" for a, b in pairs],
                              "zero_one_diversity": rng.uniform(0, 0.3, len(pairs)),
                              "accuracy_gain": rng.normal(0, 0.02, len(pairs))})
    image = rng.uniform(size=(3, 32, 32))
    atlas = {"image": image, "maps": {m: {"gradcam": rng.uniform(size=(32, 32)),
                                          "integrated_gradients": rng.normal(size=(32, 32))}
                                      for m in MODELS[:3]},
             "predictions": {m: ("tench", 0.8, k != 1) for k, m in enumerate(MODELS[:3])},
             "true_label": "tench"}
    return PaperInputs(dissimilarity=D, linkage=hierarchy.linkage(condensed, "average"),
                       linkage_labels=MODELS, families=FAMILIES, family_tests=tests,
                       atlas=atlas, error_consistency=kappa, ensembles=ensembles)


def test_every_paper_figure_at_both_widths_in_three_formats(tmp_path):
    paths = write_paper_figures(_inputs(), tmp_path)
    assert len(paths) == len(PAPER_FIGURES) * 2 * 3
    for name in PAPER_FIGURES:
        for width_name, inches in (("column", 3.5), ("page", 7.0)):
            png = tmp_path / f"{name}_{width_name}.png"
            with Image.open(png) as img:
                assert img.width == pytest.approx(inches * 300, abs=2), png.name
            svg = (tmp_path / f"{name}_{width_name}.svg").read_text()
            assert "<text" in svg, name  # editable text, not glyph paths
            assert (tmp_path / f"{name}_{width_name}.pdf").read_bytes().startswith(b"%PDF")


def test_missing_inputs_are_skipped_not_drawn_empty(tmp_path):
    paths = write_paper_figures(PaperInputs(error_consistency=_inputs().error_consistency),
                                tmp_path, formats=("png",))
    assert sorted(p.name for p in paths) == ["error_consistency_column.png",
                                              "error_consistency_page.png"]


def test_dendrogram_leaves_line_up_with_heatmap_rows():
    inputs = _inputs()
    fig = plot_similarity_with_dendrogram(inputs.dissimilarity, inputs.linkage, MODELS,
                                          FAMILIES, width=7.0)
    tree_ax, heat_ax = fig.axes[:2]
    fig.draw_without_rendering()
    order = [MODELS[k] for k in hierarchy.leaves_list(inputs.linkage)]
    assert [t.get_text() for t in heat_ax.get_yticklabels()] == order
    # leaf k sits at y = 10 k + 5 in the dendrogram: same display height as heatmap row k
    leaf_y = tree_ax.transData.transform([[0, 10 * k + 5] for k in range(5)])[:, 1]
    row_y = heat_ax.transData.transform([[0, k] for k in range(5)])[:, 1]
    np.testing.assert_allclose(leaf_y, row_y, atol=1.5)


def test_family_tests_plot_marks_alpha_and_smallest_attainable_p():
    ax = plot_family_tests(_inputs().family_tests)
    assert isinstance(ax.figure, Figure) and ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Grad-CAM / cosine",
                                                            "KernelSHAP / cosine"]
    permanova = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert sorted(line.get_xdata()[0] for line in permanova) == [0.0667, 0.2]
    spans = [p for p in ax.patches if p.get_width() > 0]
    assert spans and max(p.get_x() + p.get_width() for p in spans) == pytest.approx(1 / 15)
    with pytest.raises(UserError, match="permanova"):
        plot_family_tests(_inputs().family_tests.assign(test="mantel"))


def test_family_tests_at_column_width_keeps_its_layout(tmp_path):
    """The quickstart's case (3 methods x 4 metrics, long method names): at 3.5 in the
    legend, wider than the axes, pushed constrained layout to shrink the axes to nothing
    ("axes sizes collapsed to zero") on the third save. Now no warning, and the axes keeps
    a usable width with the legend inside the canvas."""
    import warnings

    methods, metrics = ["gradcam", "integrated_gradients", "kernelshap"], \
        ["cosine", "rbf", "kappa", "spearman"]
    keys = [(m, x) for m in methods for x in metrics]
    tests = pd.DataFrame({"method": [m for m, _ in keys for _ in range(2)],
                          "metric": [x for _, x in keys for _ in range(2)],
                          "test": ["permanova", "permdisp"] * len(keys),
                          "p_value": np.linspace(0.007, 0.8, 2 * len(keys)),
                          "n_permutations": 140.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_paper_figures(PaperInputs(family_tests=tests), tmp_path)
    assert len(paths) == 2 * 3
    with style():
        fig = Figure(figsize=(3.5, 4.9), layout="constrained")
        ax = plot_family_tests(tests, ax=fig.add_subplot())
        widths = []
        for _ in range(3):  # one draw per format, each starting from the last layout
            fig.draw_without_rendering()
            widths.append(ax.get_position().width * 3.5)  # inches
    assert min(widths) > 1.0 and max(widths) - min(widths) < 0.05, widths
    canvas, legend = fig.bbox, ax.get_legend().get_window_extent()
    assert canvas.x0 - 1 <= legend.x0 and legend.x1 <= canvas.x1 + 1
