"""Models x models similarity matrices in one vectorised pass over models x images."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from ..errors import UserError
from .batched import (
    as_tensor,
    check_segments,
    check_stack,
    compute_raw_many,
    degenerate_records,
    finish,
)
from .filters import PER_IMAGE_FILTERS, image_filter
from .metrics import METRICS
from .options import CompareOptions, as_options
from .presets import Conventions, conventions, preset_ddof, preset_options
from .similarity import aggregate_array


@dataclass
class SimilarityResult:
    """Per-image similarities and their summaries, labelled by model.

    per_image: float64 [M, K, N]; NaN where a pair-image is excluded (degenerate map,
        filtered image, or undefined metric) - each of those is counted below.
    mean/std/median/dissimilarity/n: DataFrames [M, K] (rows: first maps, cols: second).
    """

    metric: str
    params: dict
    options: dict
    rows: list[str]
    cols: list[str]
    per_image: np.ndarray
    mean: pd.DataFrame
    std: pd.DataFrame
    median: pd.DataFrame
    dissimilarity: pd.DataFrame
    n: pd.DataFrame  # images used per pair
    n_degenerate: pd.DataFrame  # pair-images excluded (or zeroed) because a map is degenerate
    n_filtered: pd.DataFrame  # pair-images left out by the image filter
    n_undefined: pd.DataFrame  # valid maps but metric undefined (NaN), e.g. one-class kappa
    degenerate: pd.DataFrame  # one row per degenerate map: maps, model, image, reason
    ddof: int = 0  # of the std in `std` and `dissimilarity`
    preset: str | None = None  # convention preset the parameters came from

    def provenance(self) -> dict:
        """Everything needed to say how the numbers were made (for write_table_csv)."""
        return {
            "metric": self.metric,
            **{f"metric.{k}": v for k, v in self.params.items()},
            **self.options,
            "ddof": self.ddof,
            **({"preset": self.preset} if self.preset else {}),
            "n_images": int(self.per_image.shape[-1]),
            "n_degenerate_maps": int(len(self.degenerate)),
        }

    def summary(self) -> pd.DataFrame:
        """Long table: one row per (row model, column model) with every summary."""
        parts = {
            key: getattr(self, key).stack()
            for key in ("mean", "std", "median", "dissimilarity", "n", "n_degenerate", "n_filtered")
        }
        out = pd.DataFrame(parts)
        out.index.names = ["model_a", "model_b"]
        return out.reset_index()

    def diagonal(self) -> pd.DataFrame:
        """Per model: the summaries of row model i vs column model i (cross-method use)."""
        if self.rows != self.cols:
            raise UserError("diagonal() needs the same models in rows and columns")
        keys = ("mean", "std", "median", "dissimilarity", "n")
        return pd.DataFrame(
            {key: np.diag(getattr(self, key).to_numpy()) for key in keys}, index=self.rows
        )


def model_names(names, m: int, what: str = "model") -> list[str]:
    """Labels for an axis of m models: the given names (distinct) or model0, model1, ..."""
    if names is None:
        return [f"model{i}" for i in range(m)]
    names = [str(n) for n in names]
    if len(names) != m or len(set(names)) != m:
        raise UserError(f"names must be {m} distinct labels for the {what} axis, got {names}")
    return names


def _stack(maps, names, what: str):
    """Accept {name: maps [N, ...]} or an array/tensor [M, N, ...] with names."""
    if isinstance(maps, dict):
        if names is not None:
            raise UserError("give model names either as dict keys or as names=, not both")
        names = list(maps)
        maps = torch.stack([as_tensor(v, f"{what}[{k!r}]") for k, v in maps.items()])
    t = as_tensor(maps, what)
    return t, names


def _image_selection(options, preds, labels, image_mask, n_images):
    """-> (options with the filter recorded, image index to compute or None, mask or None)."""
    if image_mask is not None:
        if options.filter != "all":
            raise UserError("give an image filter by options.filter or image_mask=, not both")
        options = replace(options, filter="custom")
        mask = np.asarray(image_mask, dtype=bool)
    else:
        mask = image_filter(options.filter, preds, labels)
    if mask is None:
        return options, None, None
    if mask.shape[-1] != n_images:
        raise UserError(f"image filter mask has {mask.shape[-1]} images, maps have {n_images}")
    index = None
    if mask.ndim == 1 and (image_mask is not None or options.filter in PER_IMAGE_FILTERS):
        index = torch.from_numpy(np.nonzero(mask)[0])  # skip filtered images entirely
    return options, index, mask


def _compare(
    x,
    y,
    metrics: dict[str, dict],
    options,
    names_x,
    names_y,
    segments,
    preds,
    labels,
    image_mask,
    chunk_images,
    device,
    preset=None,
    ddof: int | None = None,
) -> dict[str, SimilarityResult]:
    conv = conventions(preset)
    options = as_options(preset_options(conv, options))
    ddof = preset_ddof(conv, ddof)
    specs = {name: METRICS.get(name) for name in metrics}
    given = {name: conv.metric_params(name, metrics[name]) if conv else metrics[name]
             for name in metrics}
    params = {name: spec.params(given[name]) for name, spec in specs.items()}
    check_stack(x, "maps" if y is None else "maps_a", options)
    if y is not None:
        check_stack(y, "maps_b", options)
        if x.shape[1:] != y.shape[1:]:
            raise UserError(
                f"maps_a {tuple(x.shape)} and maps_b {tuple(y.shape)} must match after the model axis"
            )
    segments = check_segments(segments, x, options)
    options, index, mask = _image_selection(options, preds, labels, image_mask, x.shape[1])
    raws = compute_raw_many(
        x, y, [(specs[n], params[n]) for n in specs], options, segments, index, chunk_images, device
    )
    if index is not None:  # images never computed are filtered, not degenerate
        mask = np.zeros(x.shape[1], dtype=bool)
        mask[index.numpy()] = True
    labels = (names_x, names_y, y, ddof, conv.name if conv else None)
    return {
        name: _result(name, raw, specs[name], params[name], options, mask, *labels)
        for name, raw in zip(specs, raws, strict=True)
    }


def _result(
    metric, raw, spec, params, options, mask, names_x, names_y, y, ddof, preset
) -> SimilarityResult:
    done = finish(raw, spec, params, options, mask, y is None, names_x, names_y)
    if y is None:
        # Every metric here is symmetric and 1 for a map against itself; float rounding in
        # the batched products breaks both by ~1e-7, which clustering would reject.
        values = done.values
        values[:] = (values + values.transpose(1, 0, 2)) / 2
        diagonal = values[np.arange(len(names_x)), np.arange(len(names_x))]
        diagonal[np.isfinite(diagonal)] = 1.0
        values[np.arange(len(names_x)), np.arange(len(names_x))] = diagonal
    summary = aggregate_array(done.values, ddof=ddof)

    def frame(values) -> pd.DataFrame:
        return pd.DataFrame(values, index=names_x, columns=names_y)

    records = [{"maps": "a", **r} for r in degenerate_records(raw.codes_x, names_x)]
    if y is not None:
        records += [{"maps": "b", **r} for r in degenerate_records(raw.codes_y, names_y)]
    return SimilarityResult(
        metric=metric,
        params=done.params,
        options={**options.to_dict(), **({"normalization": spec.normalization}
                                          if spec.normalization else {})},
        rows=names_x,
        cols=names_y,
        per_image=done.values,
        mean=frame(summary["mean"]),
        std=frame(summary["std"]),
        median=frame(summary["median"]),
        dissimilarity=frame(summary["dissimilarity"]),
        n=frame(summary["n"]),
        n_degenerate=frame(done.degenerate_pairs.sum(-1)),
        n_filtered=frame(done.filtered.sum(-1)),
        n_undefined=frame(done.undefined.sum(-1)),
        degenerate=pd.DataFrame(records, columns=["maps", "model", "image", "reason"]),
        ddof=ddof,
        preset=preset,
    )


def _metric_specs(metrics) -> dict[str, dict]:
    """Accept ["cosine", "rbf"] or {"cosine": {}, "kappa": {"top_p": [20]}}."""
    if isinstance(metrics, str):
        raise UserError(f"metrics must be a list or dict of metric names, got {metrics!r}")
    if isinstance(metrics, dict):
        return {str(name): dict(opts or {}) for name, opts in metrics.items()}
    names = [str(name) for name in metrics]
    if not names or len(set(names)) != len(names):
        raise UserError(f"metrics must be distinct metric names, got {names}")
    return {name: {} for name in names}


def similarity_matrices(
    maps,
    metrics,
    options: CompareOptions | dict | None = None,
    *,
    names=None,
    segments=None,
    preds=None,
    labels=None,
    image_mask=None,
    chunk_images: int | None = None,
    device=None,
    preset: str | Conventions | None = None,
    ddof: int | None = None,
) -> dict[str, SimilarityResult]:
    """`similarity_matrix` for several metrics in one pass over the maps.

    metrics: metric names, or {name: metric options}, e.g. {"cosine": {}, "rbf": {"sigma": 0.5}}.
    Each chunk of maps is read, converted, checked and normalised once for all metrics.
    Returns {metric name: SimilarityResult}, equal to one similarity_matrix call per metric.
    """
    x, names = _stack(maps, names, "maps")
    names = model_names(names, x.shape[0], "model")
    return _compare(
        x,
        None,
        _metric_specs(metrics),
        options,
        names,
        names,
        segments,
        preds,
        labels,
        image_mask,
        chunk_images,
        device,
        preset,
        ddof,
    )


def similarity_matrix(
    maps,
    metric: str = "cosine",
    options: CompareOptions | dict | None = None,
    *,
    names=None,
    segments=None,
    preds=None,
    labels=None,
    image_mask=None,
    chunk_images: int | None = None,
    device=None,
    preset: str | Conventions | None = None,
    ddof: int | None = None,
    **metric_options,
) -> SimilarityResult:
    """Every model against every model on the same images.

    maps: [M, N, H, W] (or [M, N, D]) numpy/torch, any float dtype (float16 storage is
        fine: chunks are cast to float32, float64 input is kept in float64), or a dict
        {model name: maps [N, ...]}.
    options.filter with preds [M, N] (and labels [N]) picks images (see compare.filters);
    or pass image_mask ([N] or [M, M, N] bool) directly.
    chunk_images bounds memory: about M * chunk_images * H * W * 4 bytes per chunk (x a few);
        None: about 12 MiB per chunk (fast: cache-sized, no fresh memory per chunk).
    device: where chunks are computed (e.g. "cuda"); default: where maps are.
    preset: a convention preset (see compare.presets; 'thesis': the published study's);
        options, metric options and ddof given here win over it.
    ddof: of the std in the dissimilarity; None: the preset's, else 0.
    """
    return similarity_matrices(
        maps, {metric: metric_options}, options, names=names, segments=segments, preds=preds,
        labels=labels, image_mask=image_mask, chunk_images=chunk_images, device=device,
        preset=preset, ddof=ddof,
    )[metric]


def cross_method_similarity(
    maps_a,
    maps_b,
    metric: str = "cosine",
    options: CompareOptions | dict | None = None,
    *,
    names=None,
    segments=None,
    preds=None,
    labels=None,
    image_mask=None,
    chunk_images: int | None = None,
    device=None,
    preset: str | Conventions | None = None,
    ddof: int | None = None,
    **metric_options,
) -> SimilarityResult:
    """Method A's maps [M, N, ...] against method B's maps [M, N, ...] for the same models.

    Rows are models under method A, columns models under method B; `.diagonal()` gives
    each model's own method-vs-method agreement.
    """
    x, names_a = _stack(maps_a, names, "maps_a")
    y, names_b = _stack(maps_b, names, "maps_b")
    names_a = model_names(names_a, x.shape[0], "model")
    names_b = model_names(names_b, y.shape[0], "model")
    return _compare(
        x,
        y,
        {metric: metric_options},
        options,
        names_a,
        names_b,
        segments,
        preds,
        labels,
        image_mask,
        chunk_images,
        device,
        preset,
        ddof,
    )[metric]
