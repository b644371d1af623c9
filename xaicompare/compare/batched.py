"""The one computation behind `similarity`, `similarity_matrix` and `cross_method_similarity`.

Chunked over images (bounded memory), vectorised over models x models inside a chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError
from .metrics import Metric
from .options import CompareOptions
from .preprocess import DEGENERATE_REASONS, prepare, to_features


def as_tensor(maps, name: str) -> torch.Tensor:
    """A tensor view of numpy or torch maps (no copy for numpy)."""
    if isinstance(maps, torch.Tensor):
        return maps.detach()
    if isinstance(maps, np.ndarray):
        return torch.from_numpy(maps)
    raise UserError(f"{name} must be a numpy array or torch tensor, got {type(maps).__name__}")


def check_stack(maps: torch.Tensor, name: str, options: CompareOptions) -> None:
    """maps: [M, N, H, W] (or [M, N, D] at native resolution), floating point."""
    spatial = options.resolution != "native"
    if maps.ndim != 4 and not (maps.ndim == 3 and not spatial):
        need = "[M, N, H, W]" if spatial else "[M, N, H, W] or [M, N, D]"
        raise UserError(
            f"{name} must be {need} (models x images x ...) for resolution="
            f"'{options.resolution}', got shape {tuple(maps.shape)}"
        )
    if not maps.is_floating_point():
        raise UserError(f"{name} must be floating point, got dtype {maps.dtype}")


def check_segments(segments, maps: torch.Tensor, options: CompareOptions):
    if options.resolution != "superpixels":
        if segments is not None:
            raise UserError("segments are only used with resolution='superpixels'")
        return None
    if segments is None:
        raise UserError("resolution='superpixels' needs segments: integer [N, H, W]")
    segments = as_tensor(segments, "segments")
    if segments.is_floating_point() or tuple(segments.shape) != (maps.shape[1], *maps.shape[2:]):
        raise UserError(
            f"segments must be integer [N, H, W] = {(maps.shape[1], *maps.shape[2:])}, got "
            f"{segments.dtype} {tuple(segments.shape)}"
        )
    return segments


@dataclass
class RawPairs:
    raw: torch.Tensor  # float64 [M, K, N], metric values before finalize
    codes_x: np.ndarray  # int8 [M, N] degenerate reason codes (0 = fine)
    codes_y: np.ndarray  # int8 [K, N]


class ChunkBuffer:
    """One reused buffer that chunks of a map stack [M, N, ...] are converted into.

    Reusing it avoids a fresh allocation (and its page faults) per chunk, and owning it lets
    the normalisation work in place. Laid out [M, chunk, ...] like the stack, so each copy
    reads and writes long contiguous runs.
    """

    def __init__(self, maps: torch.Tensor, chunk: int, dtype: torch.dtype, device) -> None:
        self.maps = maps
        shape = (maps.shape[0], chunk, *maps.shape[2:])
        self.buffer = torch.empty(shape, dtype=dtype, device=device)

    def load(self, take) -> torch.Tensor:
        """The images `take` (slice or index tensor) as [M, n, ...], converted."""
        part = self.maps[:, take]
        view = self.buffer[:, : part.shape[1]]
        view.copy_(part)  # dtype conversion and device transfer in one copy
        return view


# Per chunk: cache-sized, and float64 temporaries (2x) stay below glibc's 32 MiB mmap limit
# (above it every temporary is fresh memory, page-faulted in: ~4x slower).
CHUNK_BYTES = 12 * 2**20


def chunk_size(x: torch.Tensor, y, dtype: torch.dtype, chunk_images: int | None) -> int:
    """Images per chunk: as given, or as many as fit CHUNK_BYTES for both stacks."""
    if chunk_images is not None:
        if not isinstance(chunk_images, int) or chunk_images < 1:
            raise UserError(f"chunk_images={chunk_images!r} must be an int >= 1 (or None: auto)")
        return chunk_images
    per_image = x.shape[0] + (0 if y is None else y.shape[0])
    per_image *= math.prod(x.shape[2:]) * torch.empty((), dtype=dtype).element_size()
    return max(1, CHUNK_BYTES // max(1, per_image))


def chunk_selection(idx: torch.Tensor):
    """A slice for consecutive image indices (a view of the source), else the indices."""
    if len(idx) == 1 or bool((idx[1:] - idx[:-1] == 1).all()):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _spatial_shape(x: torch.Tensor, options: CompareOptions) -> tuple[int, int]:
    """(H, W) of the features a spatial metric (SSIM) sees: maps keep their grid at native
    resolution or on the `pixels` grid; superpixel means have none."""
    if options.resolution == "superpixels":
        raise UserError("ssim needs maps on a pixel grid; it is undefined with "
                        "resolution='superpixels' (use native or pixels)")
    if options.resolution == "pixels":
        return tuple(options.size)
    if x.ndim != 4:
        raise UserError(f"ssim needs maps [M, N, H, W], got shape {tuple(x.shape)}")
    return tuple(x.shape[-2:])


def compute_raw_many(
    x: torch.Tensor,
    y: torch.Tensor | None,
    metrics: list[tuple[Metric, dict]],
    options: CompareOptions,
    segments: torch.Tensor | None = None,
    image_index: torch.Tensor | None = None,
    chunk_images: int | None = None,
    device=None,
) -> list[RawPairs]:
    """Raw values of several metrics for every pair (x model, y model) and image, in one pass.

    y=None: x vs x. Each chunk of images is converted, featurised, checked for degenerate
    maps and normalised once, then every metric sees the same features.
    """
    self_pairs = y is None
    n_images = x.shape[1]
    images = torch.arange(n_images) if image_index is None else image_index
    n_used = len(images)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    device = device if device is not None else x.device
    m = x.shape[0]
    k = m if self_pairs else y.shape[0]
    raws = [torch.full((m, k, n_images), float("nan"), dtype=torch.float64) for _ in metrics]
    chunk = max(1, min(chunk_size(x, y, dtype, chunk_images), n_used))
    buffer_x = ChunkBuffer(x, chunk, dtype, device)
    buffer_y = None if self_pairs else ChunkBuffer(y, chunk, dtype, device)
    # metrics grouped by the normalisation they see (a metric may fix its own)
    wanted = [metric.normalization or options.normalization for metric, _ in metrics]
    spatial = _spatial_shape(x, options) if any(m.spatial for m, _ in metrics) else None
    groups = list(dict.fromkeys(wanted))
    # degenerate codes per normalisation: a map constant after `abs` is fine for a metric
    # that sees it as it is, so each metric is excluded by the codes of what it sees
    codes_x = {how: np.zeros((m, n_images), dtype=np.int8) for how in groups}
    codes_y = codes_x if self_pairs else {how: np.zeros((k, n_images), dtype=np.int8)
                                          for how in groups}
    for start in range(0, n_used, chunk):
        idx = images[start : start + chunk]
        take = chunk_selection(idx)
        xs = buffer_x.load(take)
        ys = None if self_pairs else buffer_y.load(take)
        seg = segments[take].to(device) if segments is not None else None
        groups_x = to_features(xs, options, seg)
        groups_y = groups_x if self_pairs else to_features(ys, options, seg)
        for (pos, fx), (_, fy) in zip(groups_x, groups_y, strict=True):
            where = idx[pos]
            where = chunk_selection(where) if len(where) else where
            # the first group normalises the buffer in place; later ones need a copy of it
            originals = (fx.clone(), None if self_pairs else fy.clone()) if len(groups) > 1 \
                else None
            for g, how in enumerate(groups):
                gx, gy = (fx, fy) if g == 0 else (originals[0].clone(),
                                                  None if self_pairs else originals[1].clone())
                gx, cx = prepare(gx, how, inplace=True)
                gy, cy = (gx, cx) if self_pairs else prepare(gy, how, inplace=True)
                at = where if isinstance(where, slice) else where.numpy()
                codes_x[how][:, at] = cx.cpu().numpy()
                if not self_pairs:
                    codes_y[how][:, at] = cy.cpu().numpy()
                for raw, (metric, params), norm in zip(raws, metrics, wanted, strict=True):
                    if norm == how:
                        extra = {"shape": spatial} if metric.spatial else {}
                        raw[:, :, where] = metric.pairwise(gx, gy, **params, **extra).to(
                            "cpu", torch.float64)
    return [RawPairs(raw, codes_x[how], codes_y[how]) for raw, how in zip(raws, wanted,
                                                                            strict=True)]


def compute_raw(
    x: torch.Tensor,
    y: torch.Tensor | None,
    metric: Metric,
    params: dict,
    options: CompareOptions,
    segments: torch.Tensor | None = None,
    image_index: torch.Tensor | None = None,
    chunk_images: int | None = None,
    device=None,
) -> RawPairs:
    """Raw metric values for every pair (x model, y model) and image. y=None: x vs x."""
    return compute_raw_many(
        x, y, [(metric, params)], options, segments, image_index, chunk_images, device
    )[0]


@dataclass
class FinishedPairs:
    values: np.ndarray  # float64 [M, K, N]; NaN = excluded (degenerate, filtered, undefined)
    params: dict  # resolved metric parameters (e.g. the RBF sigma actually used)
    degenerate_pairs: np.ndarray  # bool [M, K, N]: either map degenerate (image not filtered)
    filtered: np.ndarray  # bool [M, K, N]: left out by the image filter
    undefined: np.ndarray  # bool [M, K, N]: valid maps but the metric is undefined (NaN)


def finish(
    pairs: RawPairs,
    metric: Metric,
    params: dict,
    options: CompareOptions,
    image_mask: np.ndarray | None,
    self_pairs: bool,
    names_x=None,
    names_y=None,
) -> FinishedPairs:
    """Resolve metric params (the RBF sigma), apply the kernel, degenerate policy, filter."""
    raw = pairs.raw
    m, k, n = raw.shape
    filtered = np.zeros((m, k, n), dtype=bool)
    if image_mask is not None:
        filtered = ~np.broadcast_to(np.asarray(image_mask, dtype=bool), (m, k, n))
    degenerate = (pairs.codes_x[:, None, :] != 0) | (pairs.codes_y[None, :, :] != 0)
    degenerate &= ~filtered
    if options.degenerate == "raise" and degenerate.any():
        raise UserError(
            "degenerate maps (all-zero, constant or non-finite) with degenerate='raise': "
            + describe_degenerate(pairs, names_x, names_y, limit=10)
            + "; use degenerate='exclude' to leave those pairs out"
        )
    valid = torch.from_numpy(~degenerate & ~filtered)
    if metric.resolve is not None:
        sample = valid & torch.isfinite(raw)
        if self_pairs:  # each unordered pair once, no self-comparisons
            sample &= torch.ones(m, k, dtype=torch.bool).triu(1)[:, :, None]
        if bool(sample.any()):
            params = metric.resolve(params, raw[sample], options.normalization)
        else:  # every pair degenerate or filtered: nothing to resolve from, all undefined
            params = {**params, "unresolved": "no valid pair"}
            raw = torch.full_like(raw, float("nan"))
    unresolved = "unresolved" in params
    values = metric.finalize(raw, params) if metric.finalize and not unresolved else raw
    values = values.numpy().copy()
    undefined = np.isnan(values) & valid.numpy()
    values[degenerate] = 0.0 if options.degenerate == "zero" else np.nan
    values[filtered] = np.nan
    return FinishedPairs(values, params, degenerate, filtered, undefined)


def degenerate_records(codes: np.ndarray, names) -> list[dict]:
    """Long records {model, image, reason} for every degenerate map."""
    rows, images = np.nonzero(codes)
    return [
        {"model": names[r], "image": int(i), "reason": DEGENERATE_REASONS[int(codes[r, i])]}
        for r, i in zip(rows, images, strict=True)
    ]


def describe_degenerate(pairs: RawPairs, names_x, names_y, limit: int) -> str:
    names_x = names_x or list(range(pairs.codes_x.shape[0]))
    names_y = names_y or list(range(pairs.codes_y.shape[0]))
    records = degenerate_records(pairs.codes_x, names_x)
    if pairs.codes_y is not pairs.codes_x:
        records += degenerate_records(pairs.codes_y, names_y)
    shown = ", ".join(f"{r['model']}/image {r['image']} ({r['reason']})" for r in records[:limit])
    more = f" and {len(records) - limit} more" if len(records) > limit else ""
    return f"{len(records)} map(s): {shown}{more}"
