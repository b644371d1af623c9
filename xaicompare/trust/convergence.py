"""How many samples or steps does an attribution need? Map change against a high-budget
reference as the budget grows (KernelSHAP n_samples, Integrated Gradients n_steps)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..attribution.api import check_images, explain, resolve_target
from ..attribution.registry import METHODS, method_info
from ..attribution.superpixels import compute_segments
from ..errors import UserError


def map_change(maps: torch.Tensor, reference: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image: (1 - cosine, ||maps - reference|| / ||reference||) of maps [B, H, W].
    NaN where a norm is zero."""
    a = maps.reshape(maps.shape[0], -1).to(torch.float64)
    r = reference.reshape(reference.shape[0], -1).to(torch.float64)
    na, nr = a.norm(dim=1), r.norm(dim=1)
    cosine = (a * r).sum(1) / (na * nr)
    relative = (a - r).norm(dim=1) / nr
    return (1 - cosine).cpu().numpy(), relative.cpu().numpy()


def convergence_curve(
    model,
    images: torch.Tensor,
    method: str = "kernelshap",
    budgets=(50, 100, 200),
    reference_budget: int = 2000,
    seed: int = 0,
    target=None,
    **params,
) -> pd.DataFrame:
    """Per (budget, image): one_minus_cosine and relative_l2 of the map at that budget
    against the map at `reference_budget` (same seed, target and, for KernelSHAP, the same
    superpixels, computed once). Summarise with `.groupby("budget").mean()`.

    method: a method that declares a budget parameter (kernelshap: n_samples,
            integrated_gradients: n_steps);
    params: the method's other parameters (e.g. n_segments, baseline).
    """
    budgeted = [m for m in METHODS.names() if method_info(m).budget]
    if method not in budgeted:
        raise UserError(f"method={method!r} is not accepted; accepted: {', '.join(budgeted)} "
                        "(the methods with a budget parameter)")
    key = method_info(method).budget
    if key in params:
        raise UserError(f"give the {key} values as budgets=, not {key}=")
    budgets = [int(b) for b in budgets]
    if not budgets or min(budgets) < 1 or int(reference_budget) < 1:
        raise UserError(f"budgets {budgets} and reference_budget {reference_budget} must be "
                        "positive ints")
    images = check_images(images)
    target = resolve_target(model, images, target)
    params = {**params, "seed": seed}
    if "segments" in method_info(method).shared_inputs and params.get("segments") is None:
        segments, _ = compute_segments(images, params.pop("n_segments", 50),
                                       params.pop("compactness", 10.0))
        params["segments"] = segments
    reference = explain(model, images, method, target, **{key: int(reference_budget)}, **params)
    rows = []
    for budget in budgets:
        maps = explain(model, images, method, target, **{key: budget}, **params)
        cos_err, rel_err = map_change(maps, reference)
        for i in range(len(images)):
            rows.append({"budget": budget, "image": i, "one_minus_cosine": cos_err[i],
                         "relative_l2": rel_err[i]})
    out = pd.DataFrame(rows)
    out.attrs.update({"method": method, "budget_parameter": key,
                      "reference_budget": int(reference_budget), "seed": seed})
    return out
