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
from .preprocess import average_ranks


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
