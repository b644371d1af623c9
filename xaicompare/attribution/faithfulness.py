"""Deletion and insertion curves (Petsiuk et al., RISE, 2018): does removing the pixels an
explanation ranks highest destroy the prediction fastest, and does inserting them first
restore it fastest?

Here, below the engine, whose units run the curves for a study (engine/trust_units.py) and
store them; trust/faithfulness.py re-exports these names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..errors import UserError
from .api import check_images, resolve_target
from .baselines import make_baseline

ORDERS = ("descending", "ascending", "random")
SCORES = ("probability", "logit")


@dataclass
class DeletionInsertion:
    """fractions [S+1]: share of pixels removed/inserted at each step (exact, k/HW);
    deletion/insertion [B, S+1]: target score along the curves; *_auc [B]: trapezoid areas
    over fractions in [0, 1]. Lower deletion AUC and higher insertion AUC = more faithful."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    target: np.ndarray
    params: dict

    def table(self) -> pd.DataFrame:
        """One row per image: target, deletion_auc, insertion_auc, score on the full image."""
        return pd.DataFrame({"image": np.arange(len(self.target)), "target": self.target,
                             "deletion_auc": self.deletion_auc,
                             "insertion_auc": self.insertion_auc,
                             "full_score": self.deletion[:, 0]})


def pixel_ranks(maps: torch.Tensor, order: str = "descending", seed: int = 0,
                image_seeds=None) -> torch.Tensor:
    """Rank of every pixel [B, H*W] (0 = removed first). Ties keep raster order (stable).

    order 'random': one draw for the batch from `seed`, or with `image_seeds` [B] each
    image's order from its own seed (then it does not depend on the other images)."""
    flat = maps.reshape(maps.shape[0], -1)
    if order == "random":
        if image_seeds is None:
            generator = torch.Generator().manual_seed(seed)
            keys = torch.rand(flat.shape, generator=generator, dtype=torch.float64)
        else:
            keys = torch.empty(flat.shape, dtype=torch.float64)
            for row, image_seed in enumerate(image_seeds):
                generator = torch.Generator().manual_seed(int(image_seed))
                keys[row] = torch.rand(flat.shape[1:], generator=generator, dtype=torch.float64)
        idx = torch.argsort(keys, dim=1, stable=True)
    else:
        idx = torch.sort(flat, dim=1, descending=order == "descending", stable=True).indices
    ranks = torch.empty_like(idx)
    ranks.scatter_(1, idx, torch.arange(flat.shape[1]).expand_as(idx).contiguous())
    return ranks


def deletion_insertion_curves(
    model,
    images: torch.Tensor,
    maps,
    target=None,
    steps: int = 20,
    baseline="black",
    order: str = "descending",
    score: str = "probability",
    batch_size: int = 64,
    seed: int = 0,
    image_seeds=None,
) -> DeletionInsertion:
    """Deletion and insertion curves for maps [B, H, W] of images [B, 3, H, W].

    Step s of `steps` removes (deletion: sets to the baseline) or inserts (insertion: onto
    the baseline) the round(s/steps * H*W) pixels ranked highest by the map (all channels),
    order='descending' (most important first), 'ascending', or 'random' (a null curve,
    seeded). score: softmax 'probability' of the target class, or its 'logit'.
    baseline: anything attribution.baselines.make_baseline accepts ('black', 'blur', ...).
    The (image, step) points run in batches of `batch_size`, each pass scoring a batch's
    deleted and inserted images together (2 x batch_size inputs).
    image_seeds: [B] seeds of the random order per image (see `pixel_ranks`).
    """
    images = check_images(images)
    maps = torch.as_tensor(maps).detach().to("cpu")
    b, _, h, w = images.shape
    if tuple(maps.shape) != (b, h, w):
        raise UserError(f"maps must be [B, H, W] = {(b, h, w)} like the images, "
                        f"got {tuple(maps.shape)}")
    if not isinstance(steps, int) or steps < 1:
        raise UserError(f"steps={steps!r} is not accepted; accepted: an int >= 1")
    if order not in ORDERS:
        raise UserError(f"order={order!r} is not accepted; accepted: {', '.join(ORDERS)}")
    if score not in SCORES:
        raise UserError(f"score={score!r} is not accepted; accepted: {', '.join(SCORES)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size={batch_size!r} is not accepted; accepted: an int >= 1")
    target = resolve_target(model, images, target)
    base = make_baseline(images, baseline, seed=seed)
    n_pixels = h * w
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) / steps * n_pixels).long()
    if image_seeds is not None and len(image_seeds) != b:
        raise UserError(f"image_seeds must hold one seed per image ({b}), got {len(image_seeds)}")
    ranks = pixel_ranks(torch.nan_to_num(maps.to(torch.float64)), order, seed,
                        image_seeds).to(images.device)
    counts = counts.to(images.device)

    n_points = b * (steps + 1)
    curves = torch.empty(2, n_points, dtype=torch.float64)
    with torch.inference_mode():
        for start in range(0, n_points, batch_size):
            points = torch.arange(start, min(start + batch_size, n_points), device=images.device)
            img, step = points // (steps + 1), points % (steps + 1)
            chosen = (ranks[img] < counts[step][:, None]).view(-1, 1, h, w)  # pixels moved
            deleted = torch.where(chosen, base[img], images[img])
            inserted = torch.where(chosen, images[img], base[img])
            logits = model(torch.cat([deleted, inserted]))
            values = logits.softmax(1) if score == "probability" else logits
            tgt = target[img].repeat(2)[:, None]
            picked = values.gather(1, tgt)[:, 0].to("cpu", torch.float64)
            curves[0, points.cpu()] = picked[: len(points)]
            curves[1, points.cpu()] = picked[len(points):]
    deletion = curves[0].view(b, steps + 1).numpy()
    insertion = curves[1].view(b, steps + 1).numpy()
    fractions = (counts.cpu().double() / n_pixels).numpy()
    return DeletionInsertion(
        fractions=fractions, deletion=deletion, insertion=insertion,
        deletion_auc=np.trapezoid(deletion, fractions, axis=1),
        insertion_auc=np.trapezoid(insertion, fractions, axis=1),
        target=target.cpu().numpy(),
        params={"steps": steps, "order": order, "score": score, "seed": seed,
                "baseline": baseline if isinstance(baseline, str | int | float) else "tensor"},
    )
