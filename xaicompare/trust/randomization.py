"""Model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018): an explanation that barely changes when the learned weights are replaced by
random ones does not explain what the model learned.

The randomised copies are made in models/randomization.py (every parameter redrawn from
N(mean, std^2) of its own entries), below the engine, whose units explain them for a study;
this module compares the maps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..attribution.api import check_images, explain, resolve_target
from ..compare.similarity import aggregate, similarity
from ..errors import UserError
from ..models.randomization import (  # noqa: F401  (public here since before they moved)
    MIN_STD,
    cascading_randomization,
    parameter_blocks,
    randomize_weights,
)

MODES = ("full", "cascading")


def randomization_similarity(
    model: nn.Module,
    images: torch.Tensor,
    method: str = "gradcam",
    metric: str = "spearman",
    mode: str = "full",
    seed: int = 0,
    target=None,
    options=None,
    metric_options: dict | None = None,
    **params,
) -> pd.DataFrame:
    """Similarity of the model's maps with its randomised copies' maps, same target classes
    (the original model's prediction when target=None).

    mode='full': one row (every parameter redrawn); mode='cascading': one row per step,
    output block first, the last row being the fully randomised network.
    Columns: model, method, metric, randomized (block reached), n_blocks, mean, std,
    median, n (images with defined similarity), sanity_score = 1 - mean (higher: the map
    depends more on the learned weights; near 0: the method fails the sanity check).
    """
    if mode not in MODES:
        raise UserError(f"mode={mode!r} is not accepted; accepted: {', '.join(MODES)}")
    images = check_images(images)
    target = resolve_target(model, images, target)
    original = explain(model, images, method, target, **params)
    if mode == "full":
        copies = [("all", randomize_weights(model, seed))]
    else:
        copies = cascading_randomization(model, seed)
    rows = []
    for step, (block, randomized) in enumerate(copies, start=1):
        maps = explain(randomized, images, method, target, **params)
        rows.append(randomization_row(
            getattr(model, "name", type(model).__name__), method, original, maps, metric,
            block, step if mode == "cascading" else len(parameter_blocks(model)), options,
            metric_options))
        del randomized
    out = pd.DataFrame(rows)
    out.attrs.update({"seed": seed, "mode": mode, "params": params})
    return out


def randomization_row(model: str, method: str, original, randomized, metric: str = "spearman",
                      block: str = "all", n_blocks: int = 0, options=None,
                      metric_options: dict | None = None) -> dict:
    """One row of a randomisation table: the similarity of the model's maps `original` with
    its randomised copy's maps `randomized` (both [B, H, W], the same images and targets)."""
    values = similarity(original, randomized, metric, options=options, **(metric_options or {}))
    summary = aggregate(values)
    return {"model": model, "method": method, "metric": metric, "randomized": block,
            "n_blocks": n_blocks, "mean": summary["mean"], "std": summary["std"],
            "median": summary["median"], "n": summary["n"],
            "sanity_score": 1.0 - summary["mean"]}


def sanity_scores(tables) -> pd.DataFrame:
    """One row per (model, method, metric): the sanity score of the fully randomised
    network (the last row of each randomization_similarity table)."""
    rows = [t.iloc[-1][["model", "method", "metric", "mean", "n", "sanity_score"]]
            for t in tables]
    return pd.DataFrame(rows).reset_index(drop=True).astype({"n": np.int64})
