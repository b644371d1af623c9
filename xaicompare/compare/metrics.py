"""Similarity metrics, each vectorised over models x models x images.

A metric's `pairwise(x, y, **params)` takes features x [M, n, D] and y [K, n, D] (image n of
x is compared with image n of y) and returns raw values [M, K, n]. `y is x` signals a
self-comparison, so work on x is done once. Metrics whose final value needs a parameter
fixed after the pass (the RBF width) split this into `resolve` (params from the given ones,
the normalisation and, only on request, the valid raw values) and `finalize`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError
from ..registry import Registry
from .preprocess import average_ranks, min_max


@dataclass(frozen=True)
class MetricProperties:
    """What a reader of a similarity value needs to know; report legends read these."""

    low: float  # range of the values
    high: float
    sign_aware: bool  # does flipping the sign of a map's features change the value?
    invariances: tuple[str, ...] = ()  # transforms of one map that leave the value unchanged
    higher_is_similar: bool = True
    symmetric: bool = True

    def describe(self) -> str:
        order = "higher = more alike" if self.higher_is_similar else "lower = more alike"
        return f"range [{self.low:g}, {self.high:g}], {order}"


@dataclass(frozen=True)
class Metric:
    name: str
    pairwise: Callable[..., torch.Tensor]
    defaults: dict = field(default_factory=dict)
    check: Callable[[dict], dict] | None = None  # validates/normalises params
    resolve: Callable[[dict, torch.Tensor, str], dict] | None = None  # (params, raw, norm.)
    finalize: Callable[[torch.Tensor, dict], torch.Tensor] | None = None
    properties: MetricProperties | None = None
    # The normalisation the metric's definition fixes, whatever the study's (None: the
    # study's). Top-k metrics rank features by |value| and read signs: a min-max shift
    # would reorder a signed map and make every sign positive.
    normalization: str | None = None
    spatial: bool = False  # pairwise() also takes shape=(H, W) of the flattened maps

    def params(self, given: dict) -> dict:
        unknown = set(given) - set(self.defaults)
        if unknown:
            accepted = ", ".join(sorted(self.defaults)) or "none"
            raise UserError(
                f"metric '{self.name}' got unknown option(s) {sorted(unknown)}; accepted: {accepted}"
            )
        params = {**self.defaults, **given}
        return self.check(params) if self.check else params


METRICS: Registry[Metric] = Registry("similarity metric")


def register_metric(name: str, defaults: dict | None = None, **hooks) -> Callable:
    """Decorator: register `pairwise(x, y, **params) -> [M, K, n]` under `name`."""

    def decorate(fn: Callable) -> Callable:
        METRICS.register(name)(Metric(name, fn, dict(defaults or {}), **hooks))
        return fn

    return decorate


GRAM_BLOCK = 1024  # features per block of the blocked Gram product


def _gram(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image dot products [M, K, n]: batched matrix products, no loop over pairs."""
    m, n, dim = x.shape
    k = y.shape[0]
    if _blockable(x) and (y is x or _blockable(y)):
        # One long dot product per pair is a slow matrix shape (14 x 50176 x 14). Split the
        # features into blocks and batch over (image, block): the same sums, ~2x faster, and
        # views of the [M, n, D] chunk (batch stride = block), so no copy.
        blocks = dim // GRAM_BLOCK
        xb = x.view(m, n * blocks, GRAM_BLOCK).transpose(0, 1)
        yb = xb if y is x else y.view(k, n * blocks, GRAM_BLOCK).transpose(0, 1)
        gram = torch.bmm(xb, yb.transpose(1, 2)).view(n, blocks, m, k).sum(1)
        return gram.permute(1, 2, 0)
    xt, yt = x.transpose(0, 1), y.transpose(0, 1)
    return torch.bmm(xt, yt.transpose(1, 2)).permute(1, 2, 0)


def _blockable(x: torch.Tensor) -> bool:
    """Features [M, n, D] whose image and feature axes view as (image, block, feature)."""
    dim = x.shape[-1]
    return (
        dim % GRAM_BLOCK == 0
        and dim > GRAM_BLOCK
        and x.stride(-1) == 1
        and (x.shape[1] == 1 or x.stride(1) == dim)
    )


@register_metric("cosine", properties=MetricProperties(-1, 1, True, ("positive scaling",)))
def cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Gram matrix of the raw maps, then divide by norms: one pass, no normalised copy.
    gram = _gram(x, y)
    if y is x:
        norm_x = norm_y = gram.diagonal(dim1=0, dim2=1).T.sqrt()  # [M, n]
    else:
        norm_x = torch.linalg.vector_norm(x, dim=-1)
        norm_y = torch.linalg.vector_norm(y, dim=-1)
    return gram / (norm_x[:, None, :] * norm_y[None, :, :])


@register_metric(
    "pearson", properties=MetricProperties(-1, 1, True, ("positive scaling", "shift"))
)
def pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    xc = x - x.mean(dim=-1, keepdim=True)
    return cosine(xc, xc if y is x else y - y.mean(dim=-1, keepdim=True))


@register_metric(
    "spearman", properties=MetricProperties(-1, 1, True, ("increasing monotone transforms",))
)
def spearman(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spearman's rho = Pearson correlation of average ranks (as scipy.stats.spearmanr)."""
    rx = average_ranks(x)
    return pearson(rx, rx if y is x else average_ranks(y))


# --- RBF ------------------------------------------------------------------------------------

RBF_DISTANCES = ("rms", "euclidean")
# Default sigma of the RMS distance on maps with a fixed range ([0, 1] after minmax or rank,
# [-1, 1] after maxabs): a constant, so a pair's value never depends on the other images.
RBF_DEFAULT_SIGMA = 0.25
RBF_BOUNDED_NORMALIZATIONS = ("minmax", "rank", "maxabs")


def _check_rbf(params: dict) -> dict:
    sigma = params["sigma"]
    if sigma not in (None, "median") and not (
        isinstance(sigma, int | float) and not isinstance(sigma, bool) and sigma > 0
    ):
        raise UserError(f"rbf sigma={sigma!r} is not accepted; accepted: a number > 0 (in map "
                        "units) or 'median' (of the pairs in this call: batch-dependent)")
    if params["distance"] not in RBF_DISTANCES:
        raise UserError(f"rbf distance={params['distance']!r} is not accepted; accepted: "
                        f"{', '.join(RBF_DISTANCES)}")
    return params


def _resolve_rbf(params: dict, raw_valid: torch.Tensor, normalization: str) -> dict:
    sigma = params["sigma"]
    if sigma is None:
        if params["distance"] != "rms":
            raise UserError("rbf needs sigma= (a number in map units) with distance="
                            f"'{params['distance']}': ||x - y|| grows with the map size, so no "
                            "default fits (preset 'thesis' gives the published sigma)")
        if normalization not in RBF_BOUNDED_NORMALIZATIONS:
            raise UserError(
                f"rbf needs sigma= (a number in map units) with normalization "
                f"'{normalization}': the maps' units are not fixed, so no default fits; or "
                f"normalise with {' / '.join(RBF_BOUNDED_NORMALIZATIONS)} (default sigma "
                f"{RBF_DEFAULT_SIGMA})")
        return {**params, "sigma": RBF_DEFAULT_SIGMA, "sigma_rule": "fixed default"}
    if sigma != "median":
        return {**params, "sigma": float(sigma), "sigma_rule": "fixed"}
    if raw_valid.numel() == 0:
        raise UserError("rbf sigma='median' needs at least one valid pair; give sigma explicitly")
    median = float(np.median(raw_valid.cpu().numpy()))  # torch's median is the lower one
    if median <= 0:
        raise UserError("rbf sigma='median': the median distance is 0; give sigma explicitly")
    return {**params, "sigma": median, "sigma_rule": "median"}


def _finalize_rbf(raw: torch.Tensor, params: dict) -> torch.Tensor:
    return torch.exp(-(raw**2) / (2 * params["sigma"] ** 2))


@register_metric(
    "rbf",
    defaults={"sigma": None, "distance": "rms"},
    check=_check_rbf,
    resolve=_resolve_rbf,
    finalize=_finalize_rbf,
    properties=MetricProperties(0, 1, True),
)
def rbf_distance(x: torch.Tensor, y: torch.Tensor, sigma=None, distance="rms") -> torch.Tensor:
    """exp(-d^2 / (2 sigma^2)) with a fixed sigma, so one pair's value never depends on the
    other images compared with it.

    distance='rms': d = ||a - b|| / sqrt(D) (root-mean-square difference), independent of
        resolution; sigma defaults to RBF_DEFAULT_SIGMA on min-max / rank / max-abs maps.
    distance='euclidean': d = ||a - b|| on the maps as compared (the published study's
        kernel; sigma in those units, no default).
    sigma='median' (opt-in) uses the median d over the pairs of this call: batch-dependent.
    Returns d here; `finalize` applies the kernel once sigma is known.
    """
    # ||a - b||^2 = |a|^2 + |b|^2 - 2 a.b from batched Gram products (~10x faster than a
    # difference per pair). Against cancellation: float64 products, after subtracting one
    # per-image centre from every map (distances unchanged, norms shrink to the spread).
    # any common shift works; the mean of all maps of the image is a good one
    centre = x.mean(0) if y is x else (x.sum(0) + y.sum(0)) / (x.shape[0] + y.shape[0])
    xc = x.to(torch.float64, copy=True).sub_(centre)  # a copy: all metrics share features
    yc = xc if y is x else y.to(torch.float64, copy=True).sub_(centre)
    gram = _gram(xc, yc)
    if y is x:
        sq_x = sq_y = gram.diagonal(dim1=0, dim2=1).T  # [M, n]
    else:
        sq_x = torch.linalg.vector_norm(xc, dim=-1) ** 2
        sq_y = torch.linalg.vector_norm(yc, dim=-1) ** 2
    squared = (sq_x[:, None, :] + sq_y[None, :, :] - 2 * gram).clamp_min_(0)
    scale = math.sqrt(x.shape[-1]) if distance == "rms" else 1.0
    return squared.sqrt_() / scale


# --- Cohen's kappa --------------------------------------------------------------------------


def _check_kappa(params: dict) -> dict:
    top_p, thresholds = params["top_p"], params["thresholds"]
    if top_p is not None:
        if thresholds is not None:
            raise UserError("kappa takes thresholds= or top_p=, not both")
        top_p = [float(p) for p in ([top_p] if isinstance(top_p, int | float) else top_p)]
        if not top_p or any(not 0 < p < 100 for p in top_p) or sorted(set(top_p)) != top_p:
            raise UserError(
                f"kappa top_p={params['top_p']!r} is not accepted; accepted: increasing "
                "percentages in (0, 100), e.g. [20] (2 classes) or [10, 30] (3 classes)"
            )
        return {"top_p": top_p}
    if thresholds is None:
        thresholds = [0.5]
    elif isinstance(thresholds, int | float):
        thresholds = [thresholds]
    thresholds = [float(t) for t in thresholds]
    if (
        not thresholds
        or any(not 0 < t <= 1 for t in thresholds)
        or sorted(set(thresholds)) != thresholds
    ):
        raise UserError(
            f"kappa thresholds={params['thresholds']!r} is not accepted; accepted: increasing "
            "values in (0, 1] on min-max normalised maps, e.g. [0.5] or [0.4, 0.7]"
        )
    return {"thresholds": thresholds}


def binarize(x: torch.Tensor, thresholds=None, top_p=None, dtype=torch.int64) -> torch.Tensor:
    """Class per feature (0..C-1) for kappa, along the last dim.

    thresholds: absolute cut points on the min-max normalised map; class = number of
        thresholds t with value >= t ([0.5]: 2 classes; [0.4, 0.7]: 3 classes).
    top_p: percentages; class = number of p for which the value is strictly above the
        (p% of D)-th largest value, i.e. at most p% of features (exactly p% without ties).
    dtype: of the labels (kappa itself uses uint8: 8x less memory than int64).
    """
    labels = torch.zeros(x.shape, dtype=dtype, device=x.device)
    if top_p is not None:
        dim = x.shape[-1]
        for p in top_p:
            n_top = round(p / 100 * dim)
            if n_top >= dim:
                labels += 1
                continue
            # the (n_top + 1)-th largest value = the (dim - n_top)-th smallest
            cut = torch.kthvalue(x, dim - n_top, dim=-1, keepdim=True).values
            labels += x > cut
        return labels
    scaled = _minmax_scaled(x)
    for t in thresholds:
        labels += scaled >= t
    return labels


def _minmax_scaled(x: torch.Tensor) -> torch.Tensor:
    lo, hi = min_max(x, keepdim=True)
    return torch.sub(x, lo).div_(hi - lo)


def _upper_class(x: torch.Tensor, thresholds=None, top_p=None) -> torch.Tensor:
    """binarize(x) == 1 for two classes (one threshold or one top_p), as 0/1 of x's dtype.

    Same comparisons as `binarize`, written into one new tensor (fresh memory per
    temporary is the main cost here).
    """
    out = torch.empty_like(x)
    if top_p is not None:
        n_top = round(top_p[0] / 100 * x.shape[-1])
        if n_top >= x.shape[-1]:
            return out.fill_(1)
        cut = torch.kthvalue(x, x.shape[-1] - n_top, dim=-1, keepdim=True).values
        return torch.gt(x, cut, out=out)
    lo, hi = min_max(x, keepdim=True)
    torch.sub(x, lo, out=out).div_(hi - lo)
    return torch.ge(out, thresholds[0], out=out)


def _indicator(mask: torch.Tensor) -> torch.Tensor:
    return mask.to(torch.float32)  # counts <= 2**24 are exact in float32


def kappa_from_labels(lx: torch.Tensor, ly: torch.Tensor, n_classes: int, self_pairs: bool):
    """Cohen's kappa [M, K, n] from class labels [M, n, D] and [K, n, D], via one-hot counts.

    Agreements on each class c >= 1 are Gram products of one-hot indicators; agreement on
    class 0 follows from the indicator of "not class 0", which for two classes is class 1
    itself (so two classes need one product, not two).
    """
    if n_classes == 2:
        hx = _indicator(lx == 1)
        return _kappa_two_classes(hx, hx if self_pairs else _indicator(ly == 1), self_pairs)
    dim = lx.shape[-1]
    agree, counts_x, counts_y = 0, [], []
    for c in range(1, n_classes):
        hx = _indicator(lx == c)
        hy = hx if self_pairs else _indicator(ly == c)
        both = _gram(hx, hy).double()
        agree = agree + both
        counts_x.append(hx.sum(-1).double())
        counts_y.append(hy.sum(-1).double())
    hx = _indicator(lx != 0)
    hy = hx if self_pairs else _indicator(ly != 0)
    other_x, other_y = hx.sum(-1).double(), hy.sum(-1).double()
    agree = agree + _both_zero(dim, other_x, other_y, _gram(hx, hy).double())
    return _kappa(agree, [dim - other_x, *counts_x], [dim - other_y, *counts_y], dim)


def _kappa_two_classes(hx: torch.Tensor, hy: torch.Tensor, self_pairs: bool) -> torch.Tensor:
    """Kappa from the class-1 indicators [M, n, D] (0/1 floats): one Gram product."""
    dim = hx.shape[-1]
    both_one = _gram(hx, hy).double()
    ones_x = hx.sum(-1).double()
    ones_y = ones_x if self_pairs else hy.sum(-1).double()
    agree = both_one + _both_zero(dim, ones_x, ones_y, both_one)
    return _kappa(agree, [dim - ones_x, ones_x], [dim - ones_y, ones_y], dim)


def _both_zero(dim: int, other_x, other_y, both_other) -> torch.Tensor:
    """Features where both maps are class 0 = dim - (x not 0) - (y not 0) + (both not 0)."""
    return dim - other_x[:, None] - other_y[None] + both_other


def _kappa(agree, counts_x: list, counts_y: list, dim: int) -> torch.Tensor:
    """(observed - expected) / (1 - expected) from agreement and per-class counts [M|K, n]."""
    observed = agree / dim
    expected = torch.einsum(
        "cmn,ckn->mkn", torch.stack(counts_x) / dim, torch.stack(counts_y) / dim
    )
    # expected == 1 only if both maps are one and the same class: kappa undefined (NaN).
    return (observed - expected) / (1 - expected)


@register_metric(
    "kappa",
    defaults={"thresholds": None, "top_p": None},  # thresholds None -> [0.5]
    check=_check_kappa,
    properties=MetricProperties(-1, 1, True, ("positive scaling", "shift")),
)
def kappa(x: torch.Tensor, y: torch.Tensor, thresholds=None, top_p=None) -> torch.Tensor:
    """Cohen's kappa of the binarised maps (see `binarize`)."""
    if len(top_p if top_p is not None else thresholds) == 1:  # two classes: no labels needed
        hx = _upper_class(x, thresholds, top_p)
        hy = hx if y is x else _upper_class(y, thresholds, top_p)
        return _kappa_two_classes(hx, hy, self_pairs=y is x)
    lx = binarize(x, thresholds, top_p, dtype=torch.uint8)
    ly = lx if y is x else binarize(y, thresholds, top_p, dtype=torch.uint8)
    n_classes = len(top_p if top_p is not None else thresholds) + 1
    return kappa_from_labels(lx, ly, n_classes, self_pairs=y is x)


# --- top-k feature agreement (Krishna et al., "The disagreement problem") -------------------


def _check_topk(params: dict) -> dict:
    k, fraction = params["k"], params["fraction"]
    if k is not None:
        if not isinstance(k, int) or k < 1:
            raise UserError(f"topk k={k!r} is not accepted; accepted: an int >= 1")
        return {"k": k}
    if not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise UserError(f"topk fraction={fraction!r} is not accepted; accepted: (0, 1]")
    return {"fraction": float(fraction)}


def _top_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    idx = torch.topk(x.abs(), k, dim=-1).indices  # ties broken by torch, deterministically
    return torch.zeros_like(x, dtype=torch.bool).scatter_(-1, idx, True)


def _resolve_k(dim: int, k=None, fraction=None) -> int:
    k = k if k is not None else math.ceil(fraction * dim)
    if k > dim:
        raise UserError(f"topk k={k} is larger than the number of features {dim}")
    return k


def _topk(x, y, k, fraction, sign: bool) -> torch.Tensor:
    k = _resolve_k(x.shape[-1], k, fraction)
    mx = _top_mask(x, k)
    my = mx if y is x else _top_mask(y, k)
    if not sign:
        return _gram(mx.to(x.dtype), my.to(x.dtype)) / k
    total = 0
    for s in (1, -1, 0):  # same sign: both positive, both negative, or both zero
        ax = (mx & (torch.sign(x) == s)).to(x.dtype)
        ay = ax if y is x else (my & (torch.sign(y) == s)).to(x.dtype)
        total = total + _gram(ax, ay)
    return total / k


@register_metric("topk", defaults={"k": None, "fraction": 0.1}, check=_check_topk,
                 properties=MetricProperties(0, 1, False, ("sign flips", "positive scaling")),
                 normalization="none")
def topk_feature_agreement(x, y, k=None, fraction=None) -> torch.Tensor:
    """Fraction of the top-k features (by |value|) that both maps share."""
    return _topk(x, y, k, fraction, sign=False)


@register_metric("topk_sign", defaults={"k": None, "fraction": 0.1}, check=_check_topk,
                 properties=MetricProperties(0, 1, True, ("positive scaling",)),
                 normalization="none")
def topk_sign_agreement(x, y, k=None, fraction=None) -> torch.Tensor:
    """Fraction of the top-k features shared by both maps AND of the same sign."""
    return _topk(x, y, k, fraction, sign=True)
