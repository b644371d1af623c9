"""Accuracy retention under corruptions, and how much explanations change.

Pure part: `retention_table` (accuracies in, retention out) and `explanation_change`
(clean and corrupted maps in, per-model cosine similarity out). `evaluate_corruptions`
runs models on corrupted images and hands the accuracies to `retention_table`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data.corruptions import CORRUPTIONS, SEVERITIES, corrupt, list_corruptions
from ..errors import UserError
from ..validation import ArrayLike, as_numpy, check_names

ENSEMBLE_NAME = "ensemble"
REQUIRED_COLUMNS = ("model", "corruption", "severity", "accuracy")


def retention_table(
    clean_accuracy: Mapping[str, float] | pd.Series, corrupted: pd.DataFrame
) -> pd.DataFrame:
    """Retention = accuracy on corrupted images / accuracy on clean images.

    clean_accuracy: model name -> clean accuracy (ensembles are just more names);
    corrupted: long table with columns model, corruption, severity, accuracy (more columns
    are kept). Returns it with clean_accuracy and retention added. A clean accuracy of 0
    makes retention undefined: NaN, with a warning.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in corrupted.columns]
    if missing:
        raise UserError(f"corrupted is missing columns {missing}; needs {list(REQUIRED_COLUMNS)}")
    clean = pd.Series(dict(clean_accuracy), dtype=float)
    unknown = sorted(set(corrupted["model"]) - set(clean.index))
    if unknown:
        raise UserError(f"no clean accuracy for models {unknown}; have {sorted(clean.index)}")
    out = corrupted.copy()
    out["clean_accuracy"] = out["model"].map(clean).astype(float)
    zero = out["clean_accuracy"] <= 0
    if zero.any():
        warnings.warn(
            f"retention undefined (clean accuracy 0) for {sorted(set(out.loc[zero, 'model']))}; "
            "reported as NaN",
            RuntimeWarning,
            stacklevel=2,
        )
    out["retention"] = np.where(zero, np.nan, out["accuracy"] / out["clean_accuracy"].where(~zero))
    return out


def _named_models(models: Mapping[str, nn.Module] | Sequence[nn.Module]) -> dict[str, nn.Module]:
    if isinstance(models, Mapping):
        return dict(models)
    named = {getattr(m, "name", None): m for m in models}
    if None in named or len(named) != len(models):
        raise UserError("models given as a list need unique .name attributes; pass a dict")
    return named


def _model_device(model: nn.Module) -> torch.device:
    if hasattr(model, "device"):
        return torch.device(model.device)
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def _accuracy_counts(
    models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, ensemble: bool
) -> dict[str, int]:
    counts: dict[str, int] = {}
    probs_sum = None
    for name, model in models.items():
        logits = model(images.to(_model_device(model))).float().cpu()
        counts[name] = int((logits.argmax(dim=1) == labels).sum())
        probs = logits.softmax(dim=1)
        probs_sum = probs if probs_sum is None else probs_sum + probs
    if ensemble:
        counts[ENSEMBLE_NAME] = int((probs_sum.argmax(dim=1) == labels).sum())
    return counts


def evaluate_corruptions(
    models: Mapping[str, nn.Module] | Sequence[nn.Module],
    images: torch.Tensor,
    labels: ArrayLike,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = 32,
    image_seeds: torch.Tensor | None = None,
    ensemble: bool = True,
) -> pd.DataFrame:
    """Run every model (and their softmax-average ensemble) on corrupted images.

    images: canonical float [N, 3, H, W] in [0, 1]; labels: [N] study class indices.
    image_seeds default to 0..N-1 (positions in `images`), so results do not depend on
    batch_size. Returns the `retention_table` columns: model, corruption, severity,
    accuracy, n, clean_accuracy, retention.
    """
    named = _named_models(models)
    if ENSEMBLE_NAME in named and ensemble:
        raise UserError(f"'{ENSEMBLE_NAME}' is reserved for the ensemble; rename that model")
    corruptions = list(corruptions) if corruptions is not None else list_corruptions()
    if not corruptions:
        raise UserError(f"corruptions is empty; choose from {list_corruptions()}")
    for name in corruptions:
        CORRUPTIONS.get(name)  # unknown names fail here, before any model runs
    bad = [s for s in severities if s not in SEVERITIES]
    if bad:
        raise UserError(f"severities must be in {SEVERITIES}, got {bad}")
    y = torch.as_tensor(as_numpy(labels, "labels", 1)).long().cpu()
    n = images.shape[0]
    if y.shape[0] != n:
        raise UserError(f"labels has {y.shape[0]} entries for {n} images")
    if image_seeds is None:
        image_seeds = torch.arange(n)
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")

    def run(name: str, severity: int) -> dict[str, int]:
        total: dict[str, int] = {}
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            batch = corrupt(images[sl], name, severity, seed, image_seeds[sl])
            for model, count in _accuracy_counts(named, batch, y[sl], ensemble).items():
                total[model] = total.get(model, 0) + count
        return total

    clean = {m: c / n for m, c in run(corruptions[0], 0).items()}
    records = []
    for name in corruptions:
        for severity in severities:
            for model, count in run(name, int(severity)).items():
                records.append(
                    {
                        "model": model,
                        "corruption": name,
                        "severity": int(severity),
                        "accuracy": count / n,
                        "n": n,
                    }
                )
    return retention_table(clean, pd.DataFrame.from_records(records))


def explanation_change_per_image(clean_maps: ArrayLike, corrupted_maps: ArrayLike) -> np.ndarray:
    """Cosine similarity between each clean and corrupted map: [M, N, H, W] x2 -> [M, N].

    A map that is all zeros has no direction: its cosine is NaN (not 0 or 1).
    """
    a = as_numpy(clean_maps, "clean_maps").astype(np.float64)
    b = as_numpy(corrupted_maps, "corrupted_maps").astype(np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise UserError(
            f"clean_maps and corrupted_maps must both be [M, N, H, W], got {a.shape}, {b.shape}"
        )
    a = a.reshape(*a.shape[:2], -1)
    b = b.reshape(*b.shape[:2], -1)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    dots = np.einsum("mnp,mnp->mn", a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.nan)


def explanation_change(
    clean_maps: ArrayLike, corrupted_maps: ArrayLike, names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per model: mean and std of the clean-vs-corrupted cosine similarity over images.

    Columns: model, mean_cosine, std_cosine, n (images with a defined cosine),
    n_undefined (images where a map was all zeros).
    """
    cos = explanation_change_per_image(clean_maps, corrupted_maps)
    names = check_names(names, cos.shape[0]) or [str(i) for i in range(cos.shape[0])]
    valid = ~np.isnan(cos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, on purpose
        mean = np.nanmean(cos, axis=1)
        std = np.nanstd(cos, axis=1)
    return pd.DataFrame(
        {
            "model": names,
            "mean_cosine": mean,
            "std_cosine": std,
            "n": valid.sum(axis=1),
            "n_undefined": (~valid).sum(axis=1),
        }
    )
