"""Cohen's kappa between binarised maps (the published study's agreement of important
regions): each map's pixels above a threshold (or in its top fraction) against the other's,
vectorised over models x models x images like the other metrics."""

from __future__ import annotations

import torch

from ..errors import UserError
from .metrics import MetricProperties, _gram, register_metric
from .preprocess import min_max


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
