"""Turn a chunk of maps [M, n, H, W] into comparable feature vectors [M, n, D].

Order: resolution change (superpixel means or resampling) -> degenerate detection ->
per-image normalisation -> second degenerate check (e.g. `abs` can make a map constant).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .options import CompareOptions

# Reason codes for degenerate maps; 0 means the map is fine.
DEGENERATE_REASONS = {
    1: "non-finite",
    2: "all-zero",
    3: "constant",
    4: "degenerate after normalization",
}


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..D along the last dim, ties get their average rank (as scipy.stats.rankdata)."""
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    rows, dim = flat.shape
    sorted_vals, order = torch.sort(flat, dim=-1)
    starts = torch.ones_like(sorted_vals, dtype=torch.bool)
    starts[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    # Every row starts a new group, so group ids never span two rows.
    group = torch.cumsum(starts.reshape(-1), 0) - 1
    n_groups = int(group[-1]) + 1 if group.numel() else 0
    position = torch.arange(1, dim + 1, dtype=torch.float64, device=x.device).repeat(rows)
    sums = torch.zeros(n_groups, dtype=torch.float64, device=x.device).index_add_(
        0, group, position
    )
    counts = torch.zeros_like(sums).index_add_(0, group, torch.ones_like(position))
    averaged = (sums / counts)[group].reshape(rows, dim)
    return torch.empty_like(averaged).scatter_(1, order, averaged).reshape(shape)


def normalize(x: torch.Tensor, how: str, inplace: bool = False) -> torch.Tensor:
    """Per-map normalisation along the last dim (see CompareOptions.normalization).

    inplace=True overwrites x (the compare engine's own chunk buffer: no new allocation).
    """
    if how == "none":
        return x
    out = x if inplace else x.clone()
    if how == "abs":
        return out.abs_()
    if how == "minmax":
        lo, hi = min_max(out, keepdim=True)
        return out.sub_(lo).div_(hi - lo)
    if how == "maxabs":
        lo, hi = min_max(out, keepdim=True)  # max|x| = max(hi, -lo), without an |x| copy
        return out.div_(torch.maximum(hi, -lo))
    if how == "l1":
        return out.div_(torch.linalg.vector_norm(out, ord=1, dim=-1, keepdim=True))
    if how == "l2":
        return out.div_(torch.linalg.vector_norm(out, dim=-1, keepdim=True))
    if how == "rank":
        return out.copy_(average_ranks(out) / out.shape[-1])
    raise ValueError(f"unknown normalization {how!r}")  # validated in CompareOptions


def min_max(x: torch.Tensor, keepdim: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """amin and amax along the last dim (two reductions: much faster than aminmax on CPU)."""
    return x.amin(dim=-1, keepdim=keepdim), x.amax(dim=-1, keepdim=keepdim)


def exact_degenerate_codes(x: torch.Tensor) -> torch.Tensor:
    """Reason code per map [M, n] for features [M, n, D]: 0 fine, else DEGENERATE_REASONS."""
    lo, hi = min_max(x)
    # amin/amax propagate NaN, and +-inf shows in one of them: finite iff both are finite.
    finite = torch.isfinite(lo) & torch.isfinite(hi)
    constant = hi == lo
    codes = torch.zeros(x.shape[:-1], dtype=torch.int8, device=x.device)
    codes[constant] = 3
    codes[constant & (hi == 0)] = 2
    codes[~finite] = 1
    return codes


N_PROBES = 64


def degenerate_codes(x: torch.Tensor) -> torch.Tensor:
    """Same codes as `exact_degenerate_codes`, in one pass over x instead of two.

    A map is certainly fine when two probed values differ (so it is not constant) and its
    sum is finite (so it holds no inf/NaN). Only maps without that certificate (degenerate
    ones, mostly-flat ones, or finite ones whose sum overflows) get the exact min/max check.
    """
    probed = x[..., :: max(1, x.shape[-1] // N_PROBES)]  # a strided view, no gather
    varies = (probed != probed[..., :1]).any(-1)
    certain = varies & torch.isfinite(x.sum(-1))
    codes = torch.zeros(x.shape[:-1], dtype=torch.int8, device=x.device)
    unsure = ~certain
    if unsure.any():
        codes[unsure] = exact_degenerate_codes(x[unsure])
    return codes


def superpixel_means(
    x: torch.Tensor, segments: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Mean of each map over each segment.

    x: [M, n, H, W]; segments: integer [n, H, W], shared by all models for an image.
    Images can have different segment counts, so the result is a list of groups
    (image positions within the chunk, features [M, n_group, S]) with equal S per group.
    """
    m, n = x.shape[:2]
    flat_x = x.reshape(m, n, -1)
    labels = []
    for i in range(n):  # relabel to 0..S-1 (cheap: one unique per image)
        _, inverse = torch.unique(segments[i].reshape(-1), return_inverse=True)
        labels.append(inverse)
    counts = torch.tensor([int(lab.max()) + 1 for lab in labels])
    groups = []
    for n_segments in torch.unique(counts).tolist():
        where = torch.nonzero(counts == n_segments).reshape(-1)
        index = torch.stack([labels[i] for i in where.tolist()]).to(x.device)  # [g, HW]
        values = flat_x[:, where.to(x.device)]  # [M, g, HW]
        sums = torch.zeros(m, len(where), n_segments, dtype=x.dtype, device=x.device)
        sums.scatter_add_(2, index.expand(m, -1, -1), values)
        sizes = torch.zeros(len(where), n_segments, dtype=x.dtype, device=x.device)
        sizes.scatter_add_(1, index, torch.ones_like(index, dtype=x.dtype))
        groups.append((where, sums / sizes))
    return groups


def to_features(
    maps: torch.Tensor, options: CompareOptions, segments: torch.Tensor | None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Apply the resolution choice: list of (image positions in chunk, features [M, g, D])."""
    m, n = maps.shape[:2]
    if options.resolution == "superpixels":
        return superpixel_means(maps, segments)
    if options.resolution == "pixels":
        h, w = options.size
        flat = maps.reshape(m * n, 1, *maps.shape[2:])
        kwargs = {"align_corners": False} if options.resample == "bilinear" else {}
        resized = F.interpolate(flat, size=(h, w), mode=options.resample, **kwargs)
        maps = resized.reshape(m, n, h * w)
    return [(torch.arange(n), maps.reshape(m, n, -1))]


def prepare(
    features: torch.Tensor, how: str, inplace: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise features [M, n, D]; return them and their degenerate codes [M, n].

    inplace=True normalises the given tensor itself (only for buffers the caller owns).
    """
    codes = degenerate_codes(features)
    normalized = normalize(features, how, inplace=inplace)
    if how != "none":
        after = degenerate_codes(normalized)
        codes = torch.where((codes == 0) & (after != 0), torch.full_like(codes, 4), codes)
    bad = codes != 0
    if bool(bad.any()):
        # Their values are excluded by the codes; zeros keep NaN out of what metrics share
        # across models (the RBF's common centre), so one bad model spoils no other pair.
        if normalized is features and not inplace:
            normalized = normalized.clone()
        normalized[bad] = 0
    return normalized, codes
