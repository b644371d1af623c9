"""Explanation atlases: every model (rows, grouped by family) x every method (columns) for one
image, each map laid over the image; pages per image and one multi-page PDF."""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..errors import UserError
from ..store import atomic_write
from . import names
from .style import (
    DIVERGING_CMAP,
    OVERLAY_CMAP,
    SAVE_RC,
    WRONG_COLOR,
    family_palette,
    family_sort_key,
    new_figure,
    resolve_families,
    save_figure,
)

PERCENTILE = 99.0
SCALE_LABEL = "scaled to the 99th percentile of |map|"
# Pixel-wise gradient maps of large photos are speckle that vanishes when the atlas shrinks
# a 224 px photo to an inch; for display only they are blurred by a Gaussian of this
# fraction of the image side (below 1 px: left as they are). Numbers never use this.
SMOOTH_FRACTION = 0.01
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


def _registered(method: str):
    """The method's MethodInfo, or None for a column that is not a registered method."""
    from ..attribution.registry import METHODS

    return METHODS.get(method).info if method in METHODS else None


def is_signed(method: str, signed: Mapping[str, bool] | None, maps: Sequence[np.ndarray]) -> bool:
    """Explicit `signed[method]`, else what the method's registration declares, else (None:
    it depends on the parameters, or not a registered method) any negative value."""
    if signed is not None and method in signed:
        return bool(signed[method])
    info = _registered(method)
    if info is not None and info.signed is not None:
        return bool(info.signed)
    return any(np.nanmin(m) < 0 for m in maps if np.isfinite(m).any())


def display_sigma(method: str, side: int, smooth: float | str | None) -> float:
    """Gaussian sigma (pixels) to blur `method`'s maps with for display: `smooth` as a
    fraction of the image side; "auto" = SMOOTH_FRACTION for gradient methods (pixel-wise
    maps), 0 for the rest; 0 when below one pixel."""
    if smooth is None or smooth == 0:
        return 0.0
    if smooth == "auto":
        info = _registered(method)
        fraction = SMOOTH_FRACTION if info is not None and info.family == "gradient" else 0.0
    elif isinstance(smooth, int | float) and not isinstance(smooth, bool) and 0 <= smooth < 1:
        fraction = float(smooth)
    else:
        raise UserError(f"smooth must be 'auto', None or a fraction of the image side in "
                        f"[0, 1), got {smooth!r}")
    sigma = fraction * side
    return sigma if sigma >= 1.0 else 0.0


def smoothed(saliency: np.ndarray, sigma: float) -> np.ndarray:
    """`saliency` blurred by a Gaussian of `sigma` pixels (as it is for sigma 0)."""
    if sigma <= 0:
        return saliency
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(saliency, sigma, mode="nearest")


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


def _row_label(model: str, family: str, prediction: Prediction | None) -> tuple[str, bool]:
    """The row's text and whether it marks a wrong prediction."""
    shown = names.model_label(model)
    if prediction is None:
        return f"{shown}\n({family})", False
    label, confidence, correct = prediction
    mark = {True: f" {_MARK_RIGHT}", False: f" {_MARK_WRONG} wrong"}.get(correct, "")
    return f"{shown}\n({family})\n{label} {float(confidence):.2f}{mark}", correct is False


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
    smooth: float | str | None = "auto",
) -> Figure:
    """One image, models x methods: first column the image, then each map over a grey copy.

    `maps[model][method]` is an [H, W] map in the image frame. Signed methods (IG, KernelSHAP)
    use a diverging colormap centred at 0 (red = for the class, blue = against), unsigned ones
    (Grad-CAM, rollout) a sequential one (`cmap`, default inferno). Each map is scaled to its
    own 99th percentile of |value|, so the atlas compares *where*, not *how much*. Row labels
    give family, predicted label and confidence; wrong predictions are bold black and marked
    "✗ wrong" (no hue: every hue may be a family's frame colour). Gradient methods' pixel-wise
    maps are blurred for display (`smooth`, "auto": a Gaussian of 1% of the image side on
    photos of 100 px and more; None: never), which the figure states beneath the grid.
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
    sigmas = {m: display_sigma(m, max(height, width), smooth) for m in methods}

    fig = new_figure(cell_inches * (len(methods) + 1) + 1.2, cell_inches * len(rows) + 0.9)
    grid = fig.subplots(len(rows), len(methods) + 1, squeeze=False)
    for r, model in enumerate(rows):
        first = grid[r, 0]
        first.imshow(img, interpolation="bilinear")
        text, wrong = _row_label(model, fam[model], (predictions or {}).get(model))
        first.set_ylabel(text, rotation=0, ha="right", va="center", fontsize="small",
                         color=WRONG_COLOR, fontweight="bold" if wrong else "normal",
                         labelpad=4)
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
                    fontsize="small",
                    color="black",
                    bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
                )
            else:
                colormap = diverging_cmap if signs[method] else (cmap or OVERLAY_CMAP)
                shown = smoothed(arr, sigmas[method])
                cell.imshow(
                    overlay_rgba(shown, signs[method], colormap, alpha), interpolation="bilinear"
                )
            if r == 0:
                cell.set_title(textwrap.fill(names.method_label(method).replace("_", " "),
                                             max(8, int(cell_inches * 11)),
                                             break_long_words=False), fontsize="medium")
    for ax in grid.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in grid[:, 1:].ravel():
        for spine in ax.spines.values():
            spine.set_visible(False)
    grid[0, 0].set_title("image" if true_label is None else f"true: {true_label}",
                         fontsize="medium")
    for c, method in enumerate(methods, start=1):
        colormap = diverging_cmap if signs[method] else (cmap or OVERLAY_CMAP)
        mappable = matplotlib.cm.ScalarMappable(
            Normalize(-1, 1) if signs[method] else Normalize(0, 1), colormap
        )
        bar = fig.colorbar(
            mappable, ax=grid[-1, c], orientation="horizontal", fraction=0.08, pad=0.04, aspect=12
        )
        bar.set_ticks([-1, 0, 1] if signs[method] else [0, 1])
        bar.ax.tick_params(labelsize="x-small", length=2)
        bar.outline.set_visible(False)
    # what the colour bars' -1..1 / 0..1 mean, once under them (a label per narrow bar would
    # run into its neighbour's)
    note = f"Colour: each map {SCALE_LABEL} (1 = that value or more)."
    blurred = [names.method_label(m) for m in methods if sigmas[m] > 0]
    if blurred:
        sigma = max(sigmas.values())
        note += (f"\n{', '.join(blurred)}: blurred for display only (Gaussian σ = "
                 f"{sigma:.1f} px).")
    fig.supxlabel(textwrap.fill(note, width=max(40, int(fig.get_figwidth() * 14)),
                                replace_whitespace=False), fontsize="x-small")
    if title:
        fig.suptitle(names.title_text(title))
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


_WNID = re.compile(r"^n\d{8}[_-]?")


def human_image_name(image_id: object) -> str:
    """A readable name for an image id: its file name without folder, extension and leading
    ImageNet wnid ("n01440764/n01440764_tench.JPEG" -> "tench"); the id if nothing is left."""
    name = re.split(r"[/\\]", str(image_id))[-1]
    name = re.sub(r"\.(jpe?g|png|bmp|gif|webp|tiff?)$", "", name, flags=re.IGNORECASE)
    name = _WNID.sub("", name).replace("_", " ").strip()
    return name or str(image_id)


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
    """One atlas page per image id (files `<prefix>_<name>.<fmt>`, the name as
    `human_image_name` gives it, e.g. `atlas_tench.png`) plus `<prefix>.pdf` holding every
    page; returns all written paths. `images`, `maps`, `predictions` are keyed by id."""
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
        matplotlib.rc_context(SAVE_RC),
        PdfPages(book_bytes, metadata={"CreationDate": None}) as book,
    ):
        for image_id in ids:
            fig = plot_atlas(
                images[image_id],
                maps[image_id],
                (predictions or {}).get(image_id),
                families,
                (true_labels or {}).get(image_id),
                title=human_image_name(image_id),
                **atlas_kwargs,
            )
            stem = base = _safe_stem(human_image_name(image_id))
            while stem in stems:  # images with the same name must not overwrite each other
                stem = f"{base}_{len([s for s in stems if s.startswith(base)]) + 1}"
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
