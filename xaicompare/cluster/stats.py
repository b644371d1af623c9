"""Do model families explain alike? Permutation tests and agreement of partitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from ..errors import UserError
from .tree import check_dissimilarity

STATISTICS = ("permanova", "mantel")


def _family_codes(families, labels: list[str]) -> np.ndarray:
    """Integer family code per model, in D's label order. families: dict or list in order."""
    if isinstance(families, dict):
        missing = [m for m in labels if m not in families]
        if missing:
            raise UserError(f"families has no entry for models {missing}")
        names = [families[m] for m in labels]
    else:
        names = list(families)
        if len(names) != len(labels):
            raise UserError(f"families has {len(names)} entries for {len(labels)} models")
    _, codes = np.unique(np.asarray(names, dtype=str), return_inverse=True)
    return codes


def pseudo_f(D2: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """PERMANOVA pseudo-F (Anderson 2001) for one-hot groupings [P, N, a] of squared D [N, N]."""
    n, a = onehot.shape[1], onehot.shape[2]
    total = D2.sum() / (2 * n)
    sizes = onehot.sum(axis=1)  # [P, a]
    within = (np.einsum("pia,ij,pja->pa", onehot, D2, onehot) / (2 * sizes)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((total - within) / (a - 1)) / (within / (n - a))


def mantel_r(d: np.ndarray, indicators: np.ndarray) -> np.ndarray:
    """Pearson r between condensed distances d [n_pairs] and each row of indicators [P, n_pairs]."""
    dc = d - d.mean()
    ic = indicators - indicators.mean(axis=1, keepdims=True)
    return ic @ dc / (np.linalg.norm(ic, axis=1) * np.linalg.norm(dc))


def family_permutation_test(
    D: pd.DataFrame,
    families,
    n_permutations: int = 999,
    seed: int = 0,
    statistic: str = "permanova",
) -> dict:
    """Are dissimilarities smaller within model families than between them?

    statistic='permanova': pseudo-F of the family grouping on D (larger = more structure).
    statistic='mantel': Pearson r between D and the different-family indicator
        (1 if two models are in different families; larger = more structure).
    p_value = (1 + #{permuted statistic >= observed}) / (1 + n_permutations), family labels
    permuted over models. families: {model: family} or a list in D's label order.
    """
    if statistic not in STATISTICS:
        raise UserError(
            f"statistic={statistic!r} is not accepted; accepted: {', '.join(STATISTICS)}"
        )
    if not isinstance(n_permutations, int) or n_permutations < 1:
        raise UserError(f"n_permutations={n_permutations!r} must be an int >= 1")
    D = check_dissimilarity(D)
    values = D.to_numpy()
    codes = _family_codes(families, list(D.index))
    n, a = len(codes), int(codes.max()) + 1
    if a < 2 or n - a < 1:
        raise UserError(
            f"the test needs at least 2 families and one family with 2+ models; got {a} "
            f"families for {n} models"
        )
    rng = np.random.default_rng(seed)
    perms = np.stack([codes] + [rng.permutation(codes) for _ in range(n_permutations)])
    if statistic == "permanova":
        onehot = (perms[:, :, None] == np.arange(a)[None, None, :]).astype(np.float64)
        stats = pseudo_f(values**2, onehot)
    else:
        i, j = np.triu_indices(n, k=1)
        stats = mantel_r(values[i, j], (perms[:, i] != perms[:, j]).astype(np.float64))
    observed, permuted = stats[0], stats[1:]
    # Tolerance so that permutations giving the same grouping count as ties, not float noise.
    tol = 1e-10 * max(1.0, abs(observed)) if np.isfinite(observed) else 0.0
    n_extreme = int(np.sum(permuted >= observed - tol))
    return {
        "statistic": float(observed),
        "p_value": (1 + n_extreme) / (1 + n_permutations),
        "test": statistic,
        "n_permutations": n_permutations,
    }


def adjusted_rand_index(clusters: dict, families: dict) -> float:
    """Adjusted Rand index between two labellings {model: id} of the same models (sklearn)."""
    if set(clusters) != set(families):
        raise UserError(
            f"clusters and families name different models: only in clusters "
            f"{sorted(set(clusters) - set(families))}, only in families "
            f"{sorted(set(families) - set(clusters))}"
        )
    models = sorted(clusters)
    return float(
        adjusted_rand_score([str(families[m]) for m in models], [str(clusters[m]) for m in models])
    )
