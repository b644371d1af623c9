"""Top-k agreement metrics of the disagreement problem, vectorised like the other metrics.

Krishna et al. (2022), "The Disagreement Problem in Explainable Machine Learning": over the
k features of largest |attribution| of each map,
- feature agreement: fraction of the k features that both maps have in their top k (`topk`),
- sign agreement: ... and with the same sign (`topk_sign`),
- rank agreement: fraction of the k rank positions that hold the same feature in both maps,
- signed rank agreement: ... and with the same sign.
`topk_iou` is the Jaccard index of the two top-k sets (intersection over union).
k is a fraction of the features (pixels, or superpixels with resolution='superpixels') or
an absolute count; the top k are ranked by |value|, ties broken by torch.topk. These metrics
always see the maps as they are (normalization "none"): a study's min-max normalisation would
reorder |value| of signed maps and turn every sign positive.
"""

from __future__ import annotations

import torch

from .metrics import MetricProperties, _check_topk, _gram, _resolve_k, _top_mask, register_metric

K_DEFAULTS = {"k": None, "fraction": 0.1}


def _ranked(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the k largest |x| in rank order [M, n, k], and the signs there."""
    idx = torch.topk(x.abs(), k, dim=-1, sorted=True).indices
    return idx, torch.sign(torch.gather(x, -1, idx))


def _rank(x, y, k, fraction, signed: bool) -> torch.Tensor:
    k = _resolve_k(x.shape[-1], k, fraction)
    ix, sx = _ranked(x, k)
    iy, sy = (ix, sx) if y is x else _ranked(y, k)
    out = torch.empty(x.shape[0], y.shape[0], x.shape[1], dtype=x.dtype, device=x.device)
    for i in range(x.shape[0]):  # one model of x at a time: memory K x n x k, not M x K x n x k
        same = ix[i][None] == iy
        if signed:
            same &= sx[i][None] == sy
        out[i] = same.sum(-1).to(x.dtype) / k
    return out


@register_metric("rank", defaults=K_DEFAULTS, check=_check_topk,
                 properties=MetricProperties(0, 1, False, ("sign flips", "positive scaling")),
                 normalization="none")
def rank_pairwise(x, y, k=None, fraction=None) -> torch.Tensor:
    """Fraction of the top-k rank positions holding the same feature in both maps."""
    return _rank(x, y, k, fraction, signed=False)


@register_metric("signed_rank", defaults=K_DEFAULTS, check=_check_topk,
                 properties=MetricProperties(0, 1, True, ("positive scaling",)),
                 normalization="none")
def signed_rank_pairwise(x, y, k=None, fraction=None) -> torch.Tensor:
    """Fraction of the top-k rank positions holding the same feature, of the same sign."""
    return _rank(x, y, k, fraction, signed=True)


@register_metric("topk_iou", defaults=K_DEFAULTS, check=_check_topk,
                 properties=MetricProperties(0, 1, False, ("sign flips", "positive scaling")),
                 normalization="none")
def topk_iou(x, y, k=None, fraction=None) -> torch.Tensor:
    """|A & B| / |A | B| of the two maps' top-k feature sets."""
    k = _resolve_k(x.shape[-1], k, fraction)
    mx = _top_mask(x, k).to(x.dtype)
    both = _gram(mx, mx if y is x else _top_mask(y, k).to(x.dtype))
    return both / (2 * k - both)


def rank_agreement(maps_a, maps_b, *, k: int | None = None, fraction: float = 0.1,
                   signed: bool = False, options=None, segments=None):
    """Per-image rank agreement (signed=True: signed rank agreement) at k -> [B].

    Same call shape as `similarity`: maps [B, H, W] or [B, D]; options / segments as there
    (e.g. options={"resolution": "superpixels"}). The maps are ranked by |value| as given:
    the rank metrics fix their own normalisation ('none').
    """
    from .similarity import similarity

    return similarity(maps_a, maps_b, "signed_rank" if signed else "rank", k=k,
                      fraction=fraction, options=options, segments=segments)
