"""KernelSHAP over superpixels, batched over images and coalitions.

Superpixels (SLIC in the canonical frame), the baseline and the coalitions depend only on
the image and its seed, so every model is explained over the same features with the same
coalitions (common random numbers). The forward passes of all coalitions of all images
run in large batches; the constrained regression is solved for all images at once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..errors import UserError
from .baselines import make_baseline
from .coalitions import Coalitions, sample_coalitions
from .passes import within_pass_limit
from .registry import Explanation, register_method
from .shapley import solve_kernel_regression
from .superpixels import compute_segments, relabel_segments


def default_batch_size(device: torch.device, height: int, width: int) -> int:
    """Forward batch size: large on accelerators, moderate on CPU (measured, see report)."""
    pixels = height * width
    scale = max(1, pixels // (224 * 224))
    return max(8, (256 if device.type != "cpu" else 64) // scale)


def _seeds_per_image(seed: int, image_seeds, batch: int) -> list[int]:
    if image_seeds is None:
        return [int(seed)] * batch
    seeds = torch.as_tensor(image_seeds).reshape(-1)
    if seeds.numel() != batch or seeds.is_floating_point():
        raise UserError(f"image_seeds must be an integer tensor with one seed per image "
                        f"({batch}), got {tuple(seeds.shape)} of {seeds.dtype}")
    return [int(s) for s in seeds.tolist()]


def _stack_designs(designs: list[Coalitions], device: torch.device):
    """Rows [empty, full, coalitions...] per image, padded to [B, R, M_max]."""
    max_features = max(d.masks.shape[1] for d in designs)
    max_rows = 2 + max(d.masks.shape[0] for d in designs)
    batch = len(designs)
    masks = torch.zeros(batch, max_rows, max_features, dtype=torch.bool)
    weights = torch.zeros(batch, max_rows, dtype=torch.float64)
    n_rows = torch.empty(batch, dtype=torch.long)
    for b, design in enumerate(designs):
        n_coalitions, n_features = design.masks.shape
        masks[b, 1, :n_features] = True  # row 0: empty coalition, row 1: full image
        masks[b, 2:2 + n_coalitions, :n_features] = design.masks
        weights[b, 2:2 + n_coalitions] = design.weights
        n_rows[b] = 2 + n_coalitions
    return masks.to(device), weights.to(device), n_rows


def superpixel_coalitions(images: torch.Tensor, n_samples: int, n_segments: int,
                          compactness: float, segments: torch.Tensor | None, seeds: list[int]
                          ) -> tuple[torch.Tensor, torch.Tensor, list[Coalitions]]:
    """(segments [B, H, W] with ids 0..M_b-1, M [B], the coalition set of every image).

    Shared by KernelSHAP and LIME: the same image, seed and n_samples give both methods the
    same superpixels and the very same coalitions.
    """
    batch, _, height, width = images.shape
    if segments is None:
        segments, n_features = compute_segments(images, n_segments, compactness)
    else:
        if tuple(segments.shape) != (batch, height, width):
            raise UserError(f"segments must have shape {(batch, height, width)} like the images,"
                            f" got {tuple(segments.shape)}")
        segments, n_features = relabel_segments(segments.to(images.device))
    if int(n_features.max()) > n_samples - 2:
        raise UserError(
            f"n_samples={n_samples} is too few for {int(n_features.max())} superpixels: the "
            f"regression needs at least n_features + 2; raise n_samples or lower n_segments")
    cache: dict[tuple[int, int], Coalitions] = {}  # images with equal (M, seed) share a set
    designs = []
    for m, s in zip(n_features.tolist(), seeds, strict=True):
        if (m, s) not in cache:
            cache[(m, s)] = sample_coalitions(m, n_samples, s)
        designs.append(cache[(m, s)])
    return segments, n_features, designs


def evaluate_coalitions(
    model, images: torch.Tensor, baseline: torch.Tensor, segments: torch.Tensor,
    target: torch.Tensor, masks: torch.Tensor, n_rows: torch.Tensor, batch_size: int,
) -> torch.Tensor:
    """v[b, r] = model(image_b on coalition masks[b, r], baseline elsewhere)[target_b].

    All (image, coalition) pairs are flattened and run in chunks of `batch_size`.
    Returns float64 [B, R] (NaN where r >= n_rows[b]).
    """
    batch, max_rows, _ = masks.shape
    device = images.device
    image_index = torch.repeat_interleave(torch.arange(batch), n_rows).to(device)
    row_index = torch.cat([torch.arange(int(n)) for n in n_rows]).to(device)
    flat_segments = segments.reshape(batch, -1)
    values = torch.full((batch, max_rows), float("nan"), dtype=torch.float64, device=device)
    with torch.inference_mode():
        for start in range(0, image_index.numel(), batch_size):
            img = image_index[start:start + batch_size]
            row = row_index[start:start + batch_size]
            keep = torch.gather(masks[img, row], 1, flat_segments[img])  # [C, H*W]
            keep = keep.view(img.numel(), 1, *images.shape[-2:])
            masked = torch.where(keep, images[img], baseline[img])
            logits = model(masked)
            values[img, row] = logits.gather(1, target[img, None])[:, 0].to(torch.float64)
    return values


@dataclass
class ScoredCoalitions:
    """The superpixels, the shared coalitions and the model's score of each: KernelSHAP and
    LIME differ only in how they weigh and regress these."""

    segments: torch.Tensor  # [B, H, W]
    n_features: torch.Tensor  # [B]
    masks: torch.Tensor  # [B, R, M_max]
    weights: torch.Tensor  # [B, R] Shapley-kernel weights
    n_rows: torch.Tensor  # [B]
    base_images: torch.Tensor
    values: torch.Tensor  # [B, R]: row 0 the empty coalition, row 1 the full one
    exact: list[bool]  # per image: every coalition enumerated


def score_coalitions(model, images: torch.Tensor, target: torch.Tensor, *, n_samples,
                     n_segments: int, compactness: float, segments, seed: int, image_seeds,
                     baseline, batch_size) -> ScoredCoalitions:
    """Checks the shared parameters, draws each image's coalitions from its seed and scores
    them in passes capped by executor.memory (every coalition method the same way)."""
    batch, _, height, width = images.shape
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 3:
        raise UserError(f"n_samples must be an int >= 3, got {n_samples!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise UserError(f"batch_size must be a positive int or None (auto), got {batch_size!r}")
    seeds = _seeds_per_image(seed, image_seeds, batch)
    segments, n_features, designs = superpixel_coalitions(images, n_samples, n_segments,
                                                          compactness, segments, seeds)
    masks, weights, n_rows = _stack_designs(designs, images.device)
    base_images = make_baseline(images, baseline, seed=seed)
    if batch_size is None:
        batch_size = default_batch_size(images.device, height, width)
    batch_size = within_pass_limit(batch_size, backward=False)  # executor.memory's cap
    values = evaluate_coalitions(model, images, base_images, segments, target, masks, n_rows,
                                 batch_size)
    return ScoredCoalitions(segments, n_features, masks, weights, n_rows, base_images, values,
                            [d.exact for d in designs])


@register_method("kernelshap", signed=True, display_name="KernelSHAP", family="perturbation",
                 budget="n_samples", minimums={"n_samples": 3, "n_segments": 2},
                 randomization=False,
                 # at most: an image with few superpixels enumerates its 2^M coalitions exactly
                 cost=lambda p, n, s: (n * p["n_samples"], 0, False))  # the randomised copy would need the stored superpixels
def kernelshap(
    model,
    images: torch.Tensor,
    target: torch.Tensor,
    *,
    n_samples: int = 350,
    n_segments: int = 50,
    compactness: float = 10.0,
    baseline="black",
    segments: torch.Tensor | None = None,
    seed: int = 0,
    image_seeds: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> Explanation:
    """KernelSHAP values of superpixels, painted back onto their pixels.

    n_samples:   model evaluations per image, counting the empty and full coalitions (as
                 captum counts them); exact Shapley values when 2^M <= n_samples.
    segments:    optional integer tensor [B, H, W] of feature ids; default SLIC superpixels.
    seed:        coalition seed for every image unless `image_seeds` [B] gives one per image
                 (derive those from image ids: a map must not depend on its batch).
    baseline:    anything `make_baseline` accepts; masked pixels take its values.
    extras: phi [B, M_max] (NaN past M_b), n_features [B], base_value [B] = f(baseline),
            exact [B] (bool), determined [B] (bool; False, with a warning, when the budget
            drew too few distinct coalitions to pin every value down).
    """
    batch, _, height, width = images.shape
    segments_given = segments is not None
    scored = score_coalitions(model, images, target, n_samples=n_samples,
                              n_segments=n_segments, compactness=compactness,
                              segments=segments, seed=seed, image_seeds=image_seeds,
                              baseline=baseline, batch_size=batch_size)
    segments, n_features, masks = scored.segments, scored.n_features, scored.masks
    weights, n_rows, values = scored.weights, scored.n_rows, scored.values
    base_value, full_value = values[:, 0], values[:, 1]
    feature_valid = torch.arange(masks.shape[2], device=images.device) < n_features[:, None].to(
        images.device)
    # Padding rows (images with fewer coalitions) carry weight 0; zero their NaN values
    # there only, so a NaN from the model itself still shows in the result.
    row_valid = torch.arange(masks.shape[1], device=images.device) < n_rows[:, None].to(
        images.device)
    centred = torch.where(row_valid, values - base_value[:, None], 0.0)
    phi, determined = solve_kernel_regression(masks[:, 2:], weights[:, 2:], centred[:, 2:],
                                              full_value - base_value, feature_valid)

    if not determined.all():
        warnings.warn(
            f"KernelSHAP: the {int((~determined).sum())} image(s) at batch positions "
            f"{torch.nonzero(~determined).flatten().tolist()} drew too few distinct coalitions "
            f"to determine every superpixel's value (least-norm values returned, see extras"
            f" 'determined'); raise n_samples above {n_samples}", stacklevel=3)
    maps = torch.gather(phi, 1, segments.reshape(batch, -1)).view(batch, height, width)
    extras = {
        "phi": torch.where(feature_valid, phi, torch.nan).to(torch.float32),
        "n_features": n_features.to(images.device),
        "base_value": base_value.to(torch.float32),
        "exact": torch.tensor(scored.exact, device=images.device),
        "determined": determined,
    }
    params = {"n_samples": n_samples, "n_segments": n_segments, "compactness": compactness,
              "baseline": baseline if isinstance(baseline, str | int | float) else "tensor",
              "segments": "given" if segments_given else "slic", "seed": seed,
              "image_seeds": image_seeds is not None, "design": "layered-paired"}
    # batch_size is left out of params on purpose: it changes speed, never the values.
    return Explanation(maps.to(images.dtype), extras, params)
