"""Explanation atlases: every model (rows, grouped by family) x every method (columns) for one
image, each map laid over the image; pages per image and one multi-page PDF."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..errors import UserError
from ..store import atomic_write
from .style import (
    DIVERGING_CMAP,
    OVERLAY_CMAP,
    PAPER_RC,
    WRONG_COLOR,
    family_palette,
    family_sort_key,
    new_figure,
    paper_style,
    resolve_families,
    save_figure,
)

# Methods whose maps carry a sign (evidence for vs against); others are magnitudes.
SIGNED_METHODS = {
    "integrated_gradients",
    "ig",
    "kernelshap",
    "kernel_shap",
    "shap",
    "saliency_signed",
    "gradient_x_input",
}
PERCENTILE = 99.0
_MARK_WRONG, _MARK_RIGHT = "✗", "✓"

Prediction = tuple[str, float, bool | None]


def _as_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=float)


def _image_hwc(image) -> np.ndarray:
    img = _as_numpy(image)
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise UserError(f"image must be [3, H, W] (or [1, H, W]) floats in [0, 1], got {img.shape}")
    if np.nanmin(img) < -1e-6 or np.nanmax(img) > 1 + 1e-6:
        raise UserError(
            f"image values must lie in [0, 1] (the canonical frame), got range "
            f"[{np.nanmin(img):.3g}, {np.nanmax(img):.3g}]"
        )
    img = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img
    return np.clip(img.transpose(1, 2, 0), 0.0, 1.0)


def is_signed(method: str, signed: Mapping[str, bool] | None, maps: Sequence[np.ndarray]) -> bool:
    """Explicit `signed[method]`, else known method names, else: any negative value."""
    if signed is not None and method in signed:
        return bool(signed[method])
    key = method.lower().replace("-", "_").replace(" ", "_")
    if key in SIGNED_METHODS:
        return True
    return any(np.nanmin(m) < 0 for m in maps if np.isfinite(m).any())


def robust_scale(saliency: np.ndarray, percentile: float = PERCENTILE) -> float:
    """The `percentile` of |map|, so a few extreme pixels do not wash out the rest; falls back
    to max |map| when that percentile is 0 (sparse maps), 0.0 for an all-zero map."""
    magnitude = np.abs(saliency[np.isfinite(saliency)])
    if magnitude.size == 0:
        return 0.0
    scale = float(np.percentile(magnitude, percentile))
    return scale if scale > 0 else float(magnitude.max())


def overlay_rgba(saliency: np.ndarray, signed: bool, cmap: str, alpha: float) -> np.ndarray:
    """RGBA layer: colour from the map scaled to +-p99 (or 0..p99), opacity ~ |value|, so
    regions with no attribution show the image untouched instead of a colour wash."""
    scale = robust_scale(saliency)
    norm = Normalize(-scale, scale) if signed else Normalize(0.0, scale)
    rgba = matplotlib.colormaps[cmap](norm(np.nan_to_num(saliency)))
    strength = np.clip(np.abs(np.nan_to_num(saliency)) / scale, 0.0, 1.0)
    rgba[..., 3] = alpha * np.sqrt(strength)  # sqrt: weak evidence stays visible
    return rgba


def _row_order(models: Sequence[str], fam: Mapping[str, str]) -> list[str]:
    """Models grouped by family (cnn, hybrid, transformer, mlp, ...), input order within."""
    rank = {m: k for k, m in enumerate(models)}
    return sorted(models, key=lambda m: (family_sort_key(fam[m]), rank[m]))


def _method_columns(maps: Mapping[str, Mapping[str, object]]) -> list[str]:
    return list(dict.fromkeys(method for per_model in maps.values() for method in per_model))


def _row_label(model: str, family: str, prediction: Prediction | None) -> tuple[str, str]:
    if prediction is None:
        return f"{model}\n({family})", "black"
    label, confidence, correct = prediction
    mark = {True: f" {_MARK_RIGHT}", False: f" {_MARK_WRONG}"}.get(correct, "")
    color = WRONG_COLOR if correct is False else "black"
    return f"{model}\n({family})\n{label} {float(confidence):.2f}{mark}", color


@paper_style
def plot_atlas(
    image,
    maps: Mapping[str, Mapping[str, object]],
    predictions: Mapping[str, Prediction] | None = None,
    families: Mapping[str, str] | None = None,
    true_label: str | None = None,
    cmap: str | None = None,
    alpha: float = 0.6,
    signed: Mapping[str, bool] | None = None,
    *,
    title: str | None = None,
    diverging_cmap: str = DIVERGING_CMAP,
    cell_inches: float = 1.05,
) -> Figure:
    """One image, models x methods: first column the image, then each map over a grey copy.

    `maps[model][method]` is an [H, W] map in the image frame. Signed methods (IG, KernelSHAP)
    use a diverging colormap centred at 0 (red = for the class, blue = against), unsigned ones
    (Grad-CAM, rollout) a sequential one (`cmap`, default inferno). Each map is scaled to its
    own 99th percentile of |value|, so the atlas compares *where*, not *how much*. Row labels
    give family, predicted label and confidence; wrong predictions are red and marked ✗.
    Cells for missing or non-finite maps say so instead of showing a misleading picture; a
    string in place of a map (e.g. "not applicable") is shown as that cell's text.
    """
    if not isinstance(maps, Mapping) or not maps:
        raise UserError("maps must be a non-empty dict model -> {method: [H, W] map}")
    img = _image_hwc(image)
    height, width = img.shape[:2]
    grey = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2) * 0.8 + 0.2
    models = [str(m) for m in maps]
    fam = resolve_families(models, families)
    rows = _row_order(models, fam)
    methods = _method_columns(maps)
    arrays: dict[tuple[str, str], np.ndarray] = {}
    notes: dict[tuple[str, str], str] = {}  # a text instead of a map, e.g. "not applicable"
    for model in models:
        for method, saliency in maps[model].items():
            if isinstance(saliency, str):
                notes[(model, method)] = saliency
                continue
            arr = _as_numpy(saliency)
            if arr.shape != (height, width):
                raise UserError(
                    f"map for model '{model}', method '{method}' has shape {arr.shape}; "
                    f"it must match the image frame {(height, width)}"
                )
            arrays[(model, method)] = arr
    signs = {
        m: is_signed(m, signed, [a for (_, mm), a in arrays.items() if mm == m]) for m in methods
    }
    palette = family_palette(fam.values())

    fig = new_figure(cell_inches * (len(methods) + 1) + 1.2, cell_inches * len(rows) + 0.9)
    grid = fig.subplots(len(rows), len(methods) + 1, squeeze=False)
    for r, model in enumerate(rows):
        first = grid[r, 0]
        first.imshow(img, interpolation="bilinear")
        text, color = _row_label(model, fam[model], (predictions or {}).get(model))
        first.set_ylabel(
            text, rotation=0, ha="right", va="center", fontsize=7, color=color, labelpad=4
        )
        for spine in first.spines.values():  # family shown as a coloured frame
            spine.set_visible(True)
            spine.set_color(palette[fam[model]])
            spine.set_linewidth(2.5)
        for c, method in enumerate(methods, start=1):
            cell = grid[r, c]
            cell.imshow(grey, interpolation="bilinear")
            arr = arrays.get((model, method))
            if arr is None or not np.isfinite(arr).all() or robust_scale(arr) == 0:
                why = (
                    notes.get((model, method), "missing")
                    if arr is None
                    else ("non-finite" if not np.isfinite(arr).all() else "all zero")
                )
                cell.text(
                    0.5,
                    0.5,
                    why,
                    transform=cell.transAxes,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black",
                    bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
                )
            else:
                colormap = diverging_cmap if signs[method] else (cmap or OVERLAY_CMAP)
                cell.imshow(
                    overlay_rgba(arr, signs[method], colormap, alpha), interpolation="bilinear"
                )
            if r == 0:
                cell.set_title(method.replace("_", " "), fontsize=8)
    for ax in grid.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in grid[:, 1:].ravel():
        for spine in ax.spines.values():
            spine.set_visible(False)
    grid[0, 0].set_title("image" if true_label is None else f"true: {true_label}", fontsize=8)
    for c, method in enumerate(methods, start=1):
        colormap = diverging_cmap if signs[method] else (cmap or OVERLAY_CMAP)
        mappable = matplotlib.cm.ScalarMappable(
            Normalize(-1, 1) if signs[method] else Normalize(0, 1), colormap
        )
        bar = fig.colorbar(
            mappable, ax=grid[-1, c], orientation="horizontal", fraction=0.08, pad=0.04, aspect=12
        )
        bar.set_ticks([-1, 0, 1] if signs[method] else [0, 1])
        bar.ax.tick_params(labelsize=6, length=2)
        bar.set_label("÷ p99 |map|", fontsize=6, labelpad=1)
        bar.outline.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def plot_depth_atlas(
    image,
    depth_maps: Mapping[str, Mapping[float, object]],
    other_maps: Mapping[str, Mapping[str, object]] | None = None,
    predictions: Mapping[str, Prediction] | None = None,
    families: Mapping[str, str] | None = None,
    true_label: str | None = None,
    **kwargs,
) -> Figure:
    """Per model: Grad-CAM at several depths (`depth_maps[model][0.25]` etc., as fractions of
    the network depth), then other methods (IG, KernelSHAP) beside them."""
    combined: dict[str, dict[str, object]] = {}
    signed: dict[str, bool] = dict(kwargs.pop("signed", None) or {})
    for model, per_depth in depth_maps.items():
        row: dict[str, object] = {}
        for depth in sorted(per_depth, key=float):
            if not 0 < float(depth) <= 1:
                raise UserError(f"depth {depth!r} for '{model}' must be a fraction in (0, 1]")
            column = f"Grad-CAM {float(depth):.0%}"
            row[column] = per_depth[depth]
            signed.setdefault(column, False)
        row.update((other_maps or {}).get(model, {}))
        combined[str(model)] = row
    return plot_atlas(image, combined, predictions, families, true_label, signed=signed, **kwargs)


def _safe_stem(image_id: object) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(image_id)).strip("._")
    return stem[:80] or "image"


def write_atlas_pages(
    images: Mapping[object, object],
    maps: Mapping[object, Mapping[str, Mapping[str, object]]],
    predictions: Mapping[object, Mapping[str, Prediction]] | None,
    families: Mapping[str, str] | None,
    out_dir: str | Path,
    ids: Sequence[object] | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    *,
    true_labels: Mapping[object, str] | None = None,
    prefix: str = "atlas",
    **atlas_kwargs,
) -> list[Path]:
    """One atlas page per image id (files `<prefix>_<id>.<fmt>`) plus `<prefix>.pdf` holding
    every page; returns all written paths. `images`, `maps`, `predictions` are keyed by id."""
    ids = list(images) if ids is None else list(ids)
    if not ids:
        raise UserError("no image ids to draw an atlas for")
    missing = [i for i in ids if i not in images or i not in maps]
    if missing:
        raise UserError(
            f"image id(s) {missing[:5]} have no image or no maps; known ids: {list(images)[:10]}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    stems: set[str] = set()
    book_path = out_dir / f"{prefix}.pdf"
    book_bytes = io.BytesIO()  # the book is renamed into place whole, as every figure
    with (
        matplotlib.rc_context(PAPER_RC),
        PdfPages(book_bytes, metadata={"CreationDate": None}) as book,
    ):
        for image_id in ids:
            fig = plot_atlas(
                images[image_id],
                maps[image_id],
                (predictions or {}).get(image_id),
                families,
                (true_labels or {}).get(image_id),
                title=str(image_id),
                **atlas_kwargs,
            )
            stem = _safe_stem(image_id)
            while stem in stems:  # ids differing only in odd characters must not overwrite
                stem += "_"
            stems.add(stem)
            written += save_figure(fig, out_dir / f"{prefix}_{stem}", formats=formats)
            book.savefig(fig)
    atomic_write(book_path, lambda handle: handle.write(book_bytes.getvalue()))
    written.append(book_path)
    return written


def write_disagreement_atlas(
    images, maps, predictions, families, out_dir, ids: Sequence[object], **kwargs
) -> list[Path]:
    """The atlas for a chosen list of image ids (e.g. those where models disagree most)."""
    return write_atlas_pages(
        images,
        maps,
        predictions,
        families,
        out_dir,
        ids,
        prefix=kwargs.pop("prefix", "disagreement"),
        **kwargs,
    )
