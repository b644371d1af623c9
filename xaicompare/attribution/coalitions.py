"""Coalitions (which superpixels are kept) for KernelSHAP, with their regression weights.

A coalition set depends only on (n_features, n_samples, seed): it is drawn once per image
from a recorded seed and reused by every model (common random numbers), so differences
between models' maps are not sampling noise.

Design ("layered", as in the reference `shap` KernelExplainer): the Shapley kernel puts
probability p(s) ∝ (M-1)/(s(M-s)) on coalition size s (uniform subset within a size).
Whole size layers {s, M-s} whose expected number of draws per coalition is >= 1 are
enumerated with their exact kernel weights, smallest s first; the remaining budget is
spent on paired draws (a subset and its complement) from the remaining sizes, without
repeating a coalition (a repeat adds to its weight instead of costing an evaluation).
When the budget covers all 2^M - 2 non-trivial coalitions, the set is exact and the
regression returns the exact Shapley values.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError

_DRAW_BLOCK = 256  # candidates drawn per round; fixed so results never depend on anything else
_MAX_DRAW_FACTOR = 50  # give up filling the budget after this many draws per slot


@dataclass(frozen=True)
class Coalitions:
    """Non-trivial coalitions of one image and their kernel-regression weights."""

    masks: torch.Tensor  # bool [S, M]; True = the feature keeps its image pixels
    weights: torch.Tensor  # float64 [S]; sum to 1
    exact: bool  # all 2^M - 2 non-trivial coalitions with exact Shapley-kernel weights


def size_probabilities(n_features: int) -> np.ndarray:
    """p(s) for s = 0..M: the Shapley kernel's mass on coalition size s (0 at s = 0, M)."""
    sizes = np.arange(1, n_features, dtype=np.float64)
    probs = np.zeros(n_features + 1)
    probs[1:n_features] = (n_features - 1) / (sizes * (n_features - sizes))
    total = probs.sum()
    return probs / total if total > 0 else probs


def _all_coalitions_of_size(n_features: int, size: int) -> np.ndarray:
    masks = np.zeros((math.comb(n_features, size), n_features), dtype=bool)
    for row, members in enumerate(itertools.combinations(range(n_features), size)):
        masks[row, list(members)] = True
    return masks


def _exact_coalitions(n_features: int) -> Coalitions:
    codes = np.arange(1, 2**n_features - 1, dtype=np.int64)
    masks = ((codes[:, None] >> np.arange(n_features)) & 1).astype(bool)
    sizes = masks.sum(axis=1)
    probs = size_probabilities(n_features)
    comb = np.array([math.comb(n_features, s) for s in range(n_features + 1)], dtype=np.float64)
    weights = probs[sizes] / comb[sizes]
    return Coalitions(torch.from_numpy(masks), torch.from_numpy(weights / weights.sum()), True)


def _draw_unique(
    rng: np.random.Generator, n_features: int, sizes: np.ndarray, probs: np.ndarray,
    budget: int, paired: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `budget` distinct coalitions drawn from sizes ~ probs; weights = draw counts."""
    index: dict[bytes, int] = {}
    rows: list[np.ndarray] = []
    counts: list[float] = []
    per_draw = 2 if paired else 1
    draws, max_draws = 0, _MAX_DRAW_FACTOR * budget + 1000
    while len(rows) + per_draw <= budget and draws < max_draws:
        chosen_sizes = rng.choice(sizes, size=_DRAW_BLOCK, p=probs)
        ranks = rng.random((_DRAW_BLOCK, n_features)).argsort(axis=1).argsort(axis=1)
        candidates = ranks < chosen_sizes[:, None]  # uniform subset of the chosen size
        for candidate in candidates:
            if len(rows) + per_draw > budget or draws >= max_draws:
                break
            draws += 1
            for mask in (candidate, ~candidate) if paired else (candidate,):
                key = np.packbits(mask).tobytes()
                if key in index:
                    counts[index[key]] += 1.0
                else:
                    index[key] = len(rows)
                    rows.append(mask)
                    counts.append(1.0)
    if not rows:
        return np.zeros((0, n_features), dtype=bool), np.zeros(0)
    return np.stack(rows), np.asarray(counts)


def sample_coalitions(
    n_features: int,
    n_samples: int,
    seed: int,
    paired: bool = True,
    enumerate_layers: bool = True,
) -> Coalitions:
    """The coalition set for an image with `n_features` superpixels.

    n_samples: model evaluations per image, counting the empty and the full coalition (as
               captum's KernelShap counts them), so at most n_samples - 2 coalitions here.
    seed:      non-negative int; with n_features, it alone decides the set.
    paired:    add each drawn coalition's complement (antithetic sampling).
    enumerate_layers: enumerate whole size layers the budget covers (see module docstring);
               False gives plain Shapley-kernel sampling (kept for comparisons).
    Exact enumeration is used whenever 2^M - 2 <= n_samples - 2.
    """
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise UserError(f"n_features must be an int >= 1, got {n_features!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise UserError(f"n_samples must be an int >= 2, got {n_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UserError(f"seed must be a non-negative int, got {seed!r}")
    budget = n_samples - 2
    if n_features < 63 and 2**n_features - 2 <= budget:
        return _exact_coalitions(n_features)

    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(n_features,)))
    probs = size_probabilities(n_features)
    remaining_mass, remaining_budget = 1.0, budget
    fixed_rows: list[np.ndarray] = []
    fixed_weights: list[np.ndarray] = []
    first_sampled = 1  # sizes first_sampled..M-first_sampled are left to sampling
    if enumerate_layers:
        for size in range(1, n_features // 2 + 1):
            layer_sizes = sorted({size, n_features - size})
            layer_mass = probs[layer_sizes].sum()
            layer_count = sum(math.comb(n_features, s) for s in layer_sizes)
            if remaining_budget * layer_mass / remaining_mass < layer_count - 1e-8:
                break
            for s in layer_sizes:
                fixed_rows.append(_all_coalitions_of_size(n_features, s))
                fixed_weights.append(np.full(math.comb(n_features, s), probs[s] / math.comb(n_features, s)))
            remaining_mass -= layer_mass
            remaining_budget -= layer_count
            first_sampled = size + 1

    sampled_sizes = np.arange(first_sampled, n_features - first_sampled + 1)
    exact = sampled_sizes.size == 0
    rows, weights = fixed_rows, fixed_weights
    if not exact:
        sampled_probs = probs[sampled_sizes] / probs[sampled_sizes].sum()
        drawn, counts = _draw_unique(rng, n_features, sampled_sizes, sampled_probs,
                                     remaining_budget, paired)
        if drawn.shape[0]:
            rows = [*rows, drawn]
            weights = [*weights, counts * (remaining_mass / counts.sum())]
    if not rows:
        return Coalitions(torch.zeros(0, n_features, dtype=torch.bool),
                          torch.zeros(0, dtype=torch.float64), exact)
    all_weights = np.concatenate(weights)
    return Coalitions(torch.from_numpy(np.concatenate(rows)),
                      torch.from_numpy(all_weights / all_weights.sum()), exact)
