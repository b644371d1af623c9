"""Per-image similarity of two sets of maps, and the summaries of such values."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError
from .batched import as_tensor, check_segments, check_stack, compute_raw, degenerate_records, finish
from .kappa import binarize, kappa_from_labels
from .metrics import METRICS
from .options import CompareOptions, as_options
from .preprocess import prepare, to_features
from .presets import Conventions, conventions, preset_ddof, preset_options


@dataclass
class SimilarityDetails:
    """What `similarity(..., return_details=True)` reports beside the values."""

    values: np.ndarray | torch.Tensor  # [B]
    metric: str
    params: dict  # resolved, e.g. {"sigma": 0.12, "sigma_rule": "median"}
    options: dict
    degenerate: list[dict] = field(default_factory=list)  # {model: "a"|"b", image, reason}
    n_excluded: int = 0  # pairs set to NaN (degenerate='exclude') or 0 (degenerate='zero')
    n_undefined: int = 0  # valid maps, metric undefined (e.g. kappa of two one-class maps)


def _pair_stack(maps, name: str, options: CompareOptions) -> torch.Tensor:
    t = as_tensor(maps, name)
    if t.ndim not in (2, 3):
        raise UserError(f"{name} must be [B, H, W] or [B, D], got shape {tuple(t.shape)}")
    t = t[None]
    check_stack(t, name, options)
    return t


def similarity(
    maps_a,
    maps_b,
    metric: str = "cosine",
    *,
    options: CompareOptions | dict | None = None,
    segments=None,
    return_details: bool = False,
    preset: str | Conventions | None = None,
    **metric_options,
):
    """Similarity of maps_a[i] and maps_b[i] for every image i -> values [B].

    maps: [B, H, W] or [B, D], numpy or torch (the result has the same type).
    metric: a name in METRICS (cosine, pearson, spearman, rbf, kappa, topk, topk_sign);
        metric_options go to it (rbf: sigma; kappa: thresholds or top_p; topk: k or fraction).
    options: CompareOptions (normalization, resolution, degenerate policy).
    Degenerate maps (all-zero, constant, non-finite) give NaN by default, never a silent 0.
    return_details: also return a SimilarityDetails (resolved params, degenerate images).
    preset: a convention preset ('thesis': the published study's RBF and normalisation; see
        compare.presets); options and metric_options given here win over it.
    """
    conv = conventions(preset)
    options = as_options(preset_options(conv, options))
    spec = METRICS.get(metric)
    params = spec.params(conv.metric_params(metric, metric_options) if conv else metric_options)
    a, b, segments = _pair_inputs(maps_a, maps_b, options, segments)
    raw = compute_raw(a, b, spec, params, options, segments)  # chunked: bounded memory
    done = finish(raw, spec, params, options, None, self_pairs=False, names_x=["a"], names_y=["b"])
    values = done.values[0, 0]
    if isinstance(maps_a, torch.Tensor):
        values = torch.from_numpy(values).to(maps_a.device)
    if not return_details:
        return values
    return values, SimilarityDetails(
        values=values,
        metric=metric,
        params=done.params,
        options={**options.to_dict(), **({"normalization": spec.normalization}
                                          if spec.normalization else {})},
        degenerate=degenerate_records(raw.codes_x, ["a"]) + degenerate_records(raw.codes_y, ["b"]),
        n_excluded=int(done.degenerate_pairs.sum()),
        n_undefined=int(done.undefined.sum()),
    )


def _pair_inputs(maps_a, maps_b, options, segments):
    """Both maps as one-model stacks of equal shape, and the checked segments."""
    a = _pair_stack(maps_a, "maps_a", options)
    b = _pair_stack(maps_b, "maps_b", options)
    if a.shape != b.shape:
        raise UserError(
            f"maps_a {tuple(a.shape[1:])} and maps_b {tuple(b.shape[1:])} differ in shape"
        )
    return a, b, check_segments(segments, a, options)


def pooled_kappa(
    maps_a,
    maps_b,
    *,
    thresholds=None,
    top_p=None,
    options: CompareOptions | dict | None = None,
    segments=None,
) -> float:
    """Cohen's kappa over all features of all images at once (each map binarised on its own).

    Degenerate maps are left out of the pool (or raise, with degenerate='raise');
    degenerate='zero' has no meaning for a pooled value and is treated as 'exclude'.
    """
    options = as_options(options)
    params = METRICS.get("kappa").params({"thresholds": thresholds, "top_p": top_p})
    a, b, segments = _pair_inputs(maps_a, maps_b, options, segments)
    dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    groups_a = to_features(a.to(dtype), options, segments)
    groups_b = to_features(b.to(dtype), options, segments)
    labels_a, labels_b, bad = [], [], []
    for (pos, fa), (_, fb) in zip(groups_a, groups_b, strict=True):
        fa, ca = prepare(fa, options.normalization)
        fb, cb = prepare(fb, options.normalization)
        keep = (ca[0] == 0) & (cb[0] == 0)
        bad += pos[~keep].tolist()
        labels_a.append(binarize(fa[0, keep], **params).reshape(-1))
        labels_b.append(binarize(fb[0, keep], **params).reshape(-1))
    if bad and options.degenerate == "raise":
        raise UserError(f"degenerate maps at images {sorted(bad)} with degenerate='raise'")
    la, lb = torch.cat(labels_a), torch.cat(labels_b)
    if la.numel() == 0:
        return float("nan")
    n_classes = len(params.get("top_p") or params.get("thresholds")) + 1
    value = kappa_from_labels(la[None, None], lb[None, None], n_classes, self_pairs=False)
    return float(value.reshape(()))


def dissimilarity(values, ddof: int | None = None, *, preset=None) -> float:
    """sqrt((1 - mean)^2 + std^2) of per-image similarities (the published study's measure).

    NaN values (pairs excluded as degenerate or filtered) are ignored; all-NaN gives NaN.
    ddof: of the std; None: the preset's (thesis: 1, the unbiased std), else 0.
    """
    return aggregate(values, ddof=ddof, preset=preset)["dissimilarity"]


def aggregate(values, ddof: int | None = None, *, preset=None) -> dict:
    """{mean, std, median, dissimilarity, n} over the non-NaN values (std with `ddof`)."""
    ddof = preset_ddof(conventions(preset), ddof)
    v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    v = v.astype(np.float64).reshape(-1)
    summary = aggregate_array(v[None], ddof=ddof)
    return {key: (int(col[0]) if key == "n" else float(col[0])) for key, col in summary.items()}


def aggregate_array(values: np.ndarray, ddof: int = 0) -> dict[str, np.ndarray]:
    """Summaries along the last axis, ignoring NaN: arrays shaped values.shape[:-1]."""
    n = np.sum(~np.isnan(values), axis=-1)
    with warnings.catch_warnings():  # all-NaN slices -> NaN with n == 0, reported via n
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=-1)
        std = np.nanstd(values, axis=-1, ddof=ddof)
        median = np.nanmedian(values, axis=-1)
    std = np.where(n > ddof, std, np.nan)
    return {
        "mean": mean,
        "std": std,
        "median": median,
        "dissimilarity": np.sqrt((1 - mean) ** 2 + std**2),
        "n": n,
    }
