"""Per-model prediction metrics: top-k accuracy, NLL, Brier score and calibration (ECE).

Scores are [N, K]: logits or probabilities (`scores="auto"` tells them apart by checking
that every row is non-negative and sums to 1). All metrics are computed in float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import log_softmax

from ..errors import UserError
from ..validation import ArrayLike, as_labels, as_numpy

BINNINGS = ("width", "mass")
SCORE_KINDS = ("auto", "logits", "probs")
# Probabilities are clipped here before the log so that one exact zero does not make the
# mean NLL infinite (scikit-learn's log_loss clips the same way, at machine epsilon).
PROB_FLOOR = 1e-12


def _looks_like_probs(x: np.ndarray) -> bool:
    return bool(x.size) and x.min() >= 0.0 and np.allclose(x.sum(axis=1), 1.0, atol=1e-4)


def to_log_probs(scores: ArrayLike, kind: str = "auto", name: str = "scores") -> np.ndarray:
    """[N, K] logits or probabilities -> log-probabilities (float64)."""
    if kind not in SCORE_KINDS:
        raise UserError(f"scores kind '{kind}' is not one of {SCORE_KINDS}")
    x = as_numpy(scores, name, 2).astype(np.float64)
    if not np.isfinite(x).all():
        raise UserError(f"{name} contains NaN or infinite values")
    if kind == "auto":
        kind = "probs" if _looks_like_probs(x) else "logits"
    if kind == "logits":
        return log_softmax(x, axis=1)
    if x.min() < 0 or not np.allclose(x.sum(axis=1), 1.0, atol=1e-4):
        raise UserError(f"{name} given as probs must be non-negative rows that sum to 1")
    return np.log(np.clip(x, PROB_FLOOR, 1.0))


def to_probs(scores: ArrayLike, kind: str = "auto", name: str = "scores") -> np.ndarray:
    """[N, K] logits or probabilities -> probabilities (float64)."""
    if kind == "probs" or (kind == "auto" and _looks_like_probs(as_numpy(scores, name, 2))):
        x = as_numpy(scores, name, 2).astype(np.float64)
        to_log_probs(x, "probs", name)  # validates
        return x
    return np.exp(to_log_probs(scores, kind, name))


def _bin_index(confidence: np.ndarray, n_bins: int, binning: str) -> np.ndarray:
    """Bin of each confidence. width: bins (i/n, (i+1)/n], the first also holds 0.
    mass: sort by confidence and cut into n_bins groups whose sizes differ by at most one
    (ties at a cut are split by the stable sort order, i.e. by image index)."""
    if binning == "width":
        return np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    order = np.argsort(confidence, kind="stable")
    index = np.empty(len(confidence), dtype=np.int64)
    for b, members in enumerate(np.array_split(order, n_bins)):
        index[members] = b
    return index


def _check_binning(n_bins: int, binning: str) -> None:
    if binning not in BINNINGS:
        raise UserError(f"binning '{binning}' is not one of {BINNINGS}")
    if int(n_bins) != n_bins or n_bins < 1:
        raise UserError(f"n_bins must be a positive integer, got {n_bins}")


def _reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int, binning: str) -> pd.DataFrame:
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    index = _bin_index(confidence, n_bins, binning)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, confidence, n_bins) / count
        mean_acc = np.bincount(index, correct, n_bins) / count
    if binning == "width":
        lower, upper = np.arange(n_bins) / n_bins, np.arange(1, n_bins + 1) / n_bins
    else:
        lower = np.array(
            [confidence[index == b].min() if c else np.nan for b, c in enumerate(count)]
        )
        upper = np.array(
            [confidence[index == b].max() if c else np.nan for b, c in enumerate(count)]
        )
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lower": lower,
            "upper": upper,
            "confidence": mean_conf,  # NaN for empty bins
            "accuracy": mean_acc,
            "count": count,
        }
    )


def reliability_data(
    scores: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    binning: str = "width",
    kind: str = "auto",
) -> pd.DataFrame:
    """Reliability diagram data: per confidence bin, mean confidence, accuracy and count.

    Confidence is the top-1 probability. binning="width": equal-width bins on [0, 1]
    ((i/n, (i+1)/n]); binning="mass": equal-count bins over the sorted confidences, with
    lower/upper the smallest and largest confidence in the bin. Empty bins have count 0
    and NaN confidence/accuracy.
    """
    _check_binning(n_bins, binning)
    probs = to_probs(scores, kind)
    y = as_labels(labels, probs.shape[0], probs.shape[1])
    return _reliability(probs, y, int(n_bins), binning)


def expected_calibration_error(
    scores: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    binning: str = "width",
    kind: str = "auto",
) -> float:
    """ECE = sum over bins of (count / N) * |accuracy - mean confidence|."""
    table = reliability_data(scores, labels, n_bins, binning, kind)
    full = table[table["count"] > 0]
    weights = full["count"] / full["count"].sum()
    return float((weights * (full["accuracy"] - full["confidence"]).abs()).sum())


def top_k_accuracy(log_probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the k highest scores.

    Ties count as misses: the label is in the top k only when fewer than k other classes
    score at least as high (so a constant-score model gets 0, not 1; without ties k=1
    agrees with argmax).
    """
    rows = np.arange(len(labels))
    true_score = log_probs[rows, labels]
    n_rivals = (log_probs >= true_score[:, None]).sum(axis=1) - 1  # others as high or higher
    return float((n_rivals < k).mean())


def model_metrics(
    scores: ArrayLike,
    labels: ArrayLike,
    k: Sequence[int] = (1, 5),
    n_bins: int = 15,
    binning: str = "width",
    kind: str = "auto",
) -> dict[str, float | int | str]:
    """Accuracy, top-k accuracy, NLL, Brier score and ECE of one model.

    scores: [N, K] logits or probabilities (kind="auto"|"logits"|"probs"); labels: [N].
    Returns keys: n, accuracy (top-1 by argmax, a tie going to the lowest class index),
    top{k}_accuracy (a tie counts as a miss) for each k, nll (mean
    negative log-likelihood, natural log), brier (multi-class: mean over images of
    sum_k (p_k - 1[y=k])^2, range [0, 2]), ece, ece_n_bins, ece_binning.
    A k larger than the number of classes gives NaN (with a warning), since top-k is
    then trivially 1 and would hide a mistaken class space.
    """
    _check_binning(n_bins, binning)
    log_probs = to_log_probs(scores, kind)
    n, n_classes = log_probs.shape
    if n == 0:
        raise UserError("scores has no rows; need at least one image")
    y = as_labels(labels, n, n_classes)
    probs = np.exp(log_probs)
    argmax_correct = probs.argmax(axis=1) == y
    out: dict[str, float | int | str] = {"n": n, "accuracy": float(argmax_correct.mean())}
    for kk in k:
        if int(kk) != kk or kk < 1:
            raise UserError(f"k must hold positive integers, got {kk}")
        if kk > n_classes:
            warnings.warn(
                f"top-{kk} accuracy is undefined with {n_classes} classes; reported as NaN",
                stacklevel=2,
            )
            out[f"top{kk}_accuracy"] = float("nan")
        else:
            out[f"top{kk}_accuracy"] = top_k_accuracy(log_probs, y, int(kk))
    out["nll"] = float(-log_probs[np.arange(n), y].mean())
    onehot = np.zeros_like(probs)
    onehot[np.arange(n), y] = 1.0
    out["brier"] = float(((probs - onehot) ** 2).sum(axis=1).mean())
    table = _reliability(probs, y, int(n_bins), binning)
    full = table[table["count"] > 0]
    out["ece"] = float(((full["count"] / n) * (full["accuracy"] - full["confidence"]).abs()).sum())
    out["ece_n_bins"] = int(n_bins)
    out["ece_binning"] = binning
    return out
