"""Explanation atlas on a tiny synthetic image: grid shape, grouping, markers, colours, pages."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
import pytest
from matplotlib.colors import to_rgb

import xaicompare.attribution  # noqa: F401  (registers the methods' display names)
from xaicompare.errors import UserError
from xaicompare.report import (
    plot_atlas,
    plot_depth_atlas,
    robust_scale,
    write_atlas_pages,
    write_disagreement_atlas,
)
from xaicompare.report.atlas import overlay_rgba
from xaicompare.report.style import WRONG_COLOR

H = W = 16
FAMILIES = {"vit": "transformer", "resnet": "cnn", "mixer": "mlp"}


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(3, H, W))


def _maps(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    left_positive = np.where(np.arange(W) < W // 2, 1.0, -1.0)[None, :].repeat(H, 0)
    return {
        model: {
            "gradcam": rng.uniform(size=(H, W)),
            "integrated_gradients": left_positive * 2.0,
            "kernelshap": rng.normal(size=(H, W)),
        }
        for model in FAMILIES
    }


PREDICTIONS = {
    "vit": ("tench", 0.91, True),
    "resnet": ("golf ball", 0.55, False),
    "mixer": ("tench", 0.40, None),
}


def _grid_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_atlas_grid_rows_columns_grouping_and_wrong_marker():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a missing glyph for ✗ / ✓ would warn
        fig = plot_atlas(_image(), _maps(), PREDICTIONS, FAMILIES, true_label="tench")
        fig.savefig(io.BytesIO(), format="png")  # renders every glyph
    axes = _grid_axes(fig)
    assert len(axes) == 3 * 4  # 3 models x (image + 3 methods)
    titles = [ax.get_title().replace("\n", " ") for ax in axes[:4]]  # long names wrap
    assert titles == ["true: tench", "Grad-CAM", "Integrated Gradients", "KernelSHAP"]
    row_labels = [ax.get_yaxis().get_label() for ax in axes[::4]]
    # grouped by family: cnn, transformer, mlp
    assert [label.get_text().split("\n")[0] for label in row_labels] == ["resnet", "vit", "mixer"]
    resnet, vit, mixer = row_labels
    assert "golf ball 0.55 ✗ wrong" in resnet.get_text()
    assert np.allclose(to_rgb(resnet.get_color()), to_rgb(WRONG_COLOR))
    assert resnet.get_fontweight() == "bold" and vit.get_fontweight() == "normal"
    assert "tench 0.91 ✓" in vit.get_text() and "✗" not in vit.get_text()
    assert "✓" not in mixer.get_text() and "✗" not in mixer.get_text()
    assert "(cnn)" in resnet.get_text()


def test_signed_maps_use_diverging_colours_centred_at_zero():
    saliency = np.where(np.arange(W) < W // 2, 1.0, -1.0)[None, :].repeat(H, 0)
    rgba = overlay_rgba(saliency, signed=True, cmap="RdBu_r", alpha=0.5)
    left, right = rgba[0, 0], rgba[0, -1]
    assert left[0] > left[2] and right[2] > right[0]  # + red, - blue
    assert left[3] == pytest.approx(0.5) and right[3] == pytest.approx(0.5)
    zero = overlay_rgba(np.r_[np.zeros(99), 1.0].reshape(10, 10), True, "RdBu_r", 0.5)
    assert zero[0, 0, 3] == 0.0  # no evidence -> the image shows through


def test_robust_scale_is_the_99th_percentile_of_magnitude():
    values = np.r_[np.linspace(-1, 1, 999), 1000.0]
    assert robust_scale(values) == pytest.approx(np.percentile(np.abs(values), 99))
    sparse = np.zeros(1000)
    sparse[0] = -3.0
    assert robust_scale(sparse) == 3.0
    assert robust_scale(np.zeros(5)) == 0.0


def test_degenerate_and_missing_maps_are_labelled_not_drawn():
    maps = _maps()
    maps["vit"]["gradcam"] = np.zeros((H, W))
    del maps["mixer"]["kernelshap"]
    fig = plot_atlas(_image(), maps, families=FAMILIES)
    texts = [t.get_text() for ax in _grid_axes(fig) for t in ax.texts]
    assert texts.count("all zero") == 1 and texts.count("missing") == 1
    maps["mixer"]["kernelshap"] = "not applicable"  # a method that cannot explain the model
    fig = plot_atlas(_image(), maps, families=FAMILIES)
    texts = [t.get_text() for ax in _grid_axes(fig) for t in ax.texts]
    assert texts.count("not applicable") == 1 and texts.count("missing") == 0


def test_atlas_rejects_maps_in_another_frame_and_bad_images():
    maps = _maps()
    maps["vit"]["gradcam"] = np.zeros((H // 2, W // 2))
    with pytest.raises(UserError, match="vit.*gradcam"):
        plot_atlas(_image(), maps)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        plot_atlas(_image() * 255, _maps())


def test_depth_atlas_columns():
    depth = {
        m: {0.25: np.random.default_rng(0).uniform(size=(H, W)), 1.0: np.ones((H, W))}
        for m in FAMILIES
    }
    others = {m: {"integrated_gradients": v["integrated_gradients"]} for m, v in _maps().items()}
    fig = plot_depth_atlas(_image(), depth, others, families=FAMILIES)
    titles = [ax.get_title().replace("\n", " ") for ax in _grid_axes(fig)[:4]]
    assert titles == ["image", "Grad-CAM 25%", "Grad-CAM 100%", "Integrated Gradients"]


def test_write_atlas_pages_one_file_per_image_and_a_multipage_pdf(tmp_path):
    ids = ["img/1", "img 2"]
    images = {i: _image(k) for k, i in enumerate(ids)}
    maps = {i: _maps(k) for k, i in enumerate(ids)}
    preds = {i: PREDICTIONS for i in ids}
    paths = write_atlas_pages(images, maps, preds, FAMILIES, tmp_path, ids=ids, formats=("png",))
    names = sorted(p.name for p in paths)
    assert names == ["atlas.pdf", "atlas_1.png", "atlas_img_2.png"]  # file name, no folder
    assert all(p.stat().st_size > 1000 for p in paths)
    pdf = (tmp_path / "atlas.pdf").read_bytes()
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 2
    subset = write_disagreement_atlas(
        images, maps, preds, FAMILIES, tmp_path / "d", ["img 2"], formats=("png",)
    )
    assert sorted(p.name for p in subset) == ["disagreement.pdf", "disagreement_img_2.png"]
    with pytest.raises(UserError, match="nope"):
        write_atlas_pages(images, maps, preds, FAMILIES, tmp_path, ids=["nope"])
