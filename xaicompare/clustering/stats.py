"""Do model families explain alike? Permutation tests and agreement of partitions.

PERMANOVA (location and spread together), PERMDISP (spread alone: Anderson 2006) and Mantel
share one machinery: the statistic is computed for the observed grouping and for other
groupings of the same family sizes; every distinct grouping when there are at most
MAX_EXACT_GROUPINGS of them (exact p), else random permutations.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from ..errors import UserError
from .tree import check_dissimilarity

STATISTICS = ("permanova", "permdisp", "mantel")
MAX_EXACT_GROUPINGS = 10_000  # e.g. 14 models, 9 + 5: C(14, 5) = 2002 groupings


def _family_names_and_codes(families, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted family names, integer code per model in D's label order)."""
    if isinstance(families, dict):
        missing = [m for m in labels if m not in families]
        if missing:
            raise UserError(f"families has no entry for models {missing}")
        names = [families[m] for m in labels]
    else:
        names = list(families)
        if len(names) != len(labels):
            raise UserError(f"families has {len(names)} entries for {len(labels)} models")
    unique, codes = np.unique(np.asarray(names, dtype=str), return_inverse=True)
    return unique, codes.reshape(-1)


def pseudo_f(D2: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """PERMANOVA pseudo-F (Anderson 2001) for one-hot groupings [P, N, a] of squared D [N, N]."""
    n, a = onehot.shape[1], onehot.shape[2]
    total = D2.sum() / (2 * n)
    sizes = onehot.sum(axis=1)  # [P, a]
    within = (np.einsum("pia,ij,pja->pa", onehot, D2, onehot) / (2 * sizes)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((total - within) / (a - 1)) / (within / (n - a))


def distances_to_centroids(D2: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """Distance of each model to its group's centroid in the PCoA space of D [P, N].

    From D^2 directly: |x_i - c_g|^2 = mean_j d_ij^2 - sum_jk d_jk^2 / (2 n_g^2) over the
    members j, k of g, which PCoA with all axes reproduces, the negative-eigenvalue axes
    counting negatively; sqrt(|.|) as vegan's betadisper (Anderson 2006).
    """
    to_members = np.einsum("ij,pja->pia", D2, onehot)  # sum of d^2 to each group's members
    sizes = onehot.sum(axis=1)  # [P, a]
    within = np.einsum("pia,pia->pa", onehot, to_members)  # sum over ordered member pairs
    squared = to_members / sizes[:, None, :] - (within / (2 * sizes**2))[:, None, :]
    return np.sqrt(np.abs((onehot * squared).sum(axis=-1)))


def anova_f(values: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """One-way ANOVA F of values [N] or [P, N] for one-hot groupings [P, N, a]."""
    n, a = onehot.shape[1], onehot.shape[2]
    values = np.broadcast_to(values, onehot.shape[:2])
    sizes = onehot.sum(axis=1)
    means = np.einsum("pia,pi->pa", onehot, values) / sizes
    grand = values.mean(axis=1, keepdims=True)
    between = (sizes * (means - grand) ** 2).sum(axis=1)
    within = (values**2).sum(axis=1) - (sizes * means**2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (between / (a - 1)) / (within / (n - a))


def permdisp_f(D2: np.ndarray, codes: np.ndarray, groupings: np.ndarray) -> tuple:
    """PERMDISP F for the observed grouping `codes` and for each row of `groupings`.

    As Anderson (2006) and vegan's permutest.betadisper: distances z to the observed
    groups' centroids; a permuted F is the ANOVA F of the residuals z - mean(z of its group)
    regrouped (permuting residuals removes the location differences of z); the observed
    grouping's row holds the observed F (it counts among the reference, as the +1 of a
    random permutation p). Returns (F of every row [P], z [N]).
    """
    a = int(codes.max()) + 1
    observed = (codes[None, :, None] == np.arange(a)).astype(np.float64)
    z = distances_to_centroids(D2, observed)[0]
    means = np.einsum("ia,i->a", observed[0], z) / observed[0].sum(axis=0)
    residuals = z - means[codes]
    onehot = (groupings[:, :, None] == np.arange(a)).astype(np.float64)
    stats = anova_f(residuals, onehot)
    same = (groupings == codes).all(axis=1)  # the observed grouping: F of z itself
    stats[same] = anova_f(z, observed)[0]
    return stats, z


def count_groupings(codes: np.ndarray) -> int:
    """Distinct assignments of the family labels to the models (a multinomial coefficient)."""
    count, left = 1, len(codes)
    for size in np.bincount(codes):
        count *= math.comb(left, int(size))
        left -= int(size)
    return count


def smallest_attainable_p(family_sizes, statistic: str = "permanova", exact: bool = True,
                          n_permutations: int | None = None) -> float:
    """The smallest p-value `family_permutation_test` can return for models in families of
    these sizes: no data, however clearly grouped, gives less.

    Exact tests compare every distinct grouping. PERMANOVA's pseudo-F and Mantel's r depend
    only on the partition, so the groupings that swap the labels of equal-sized families tie
    with the observed one: p >= (prod over sizes s of m_s!) / #groupings, m_s the number of
    families of size s (5 models in 2 + 2 + 1: 2! / 30 = 1/15). PERMDISP's relabelled
    groupings permute residuals and do not tie: 1 / #groupings. Random permutations:
    1 / (1 + n_permutations).
    """
    if statistic not in STATISTICS:
        raise UserError(
            f"statistic={statistic!r} is not accepted; accepted: {', '.join(STATISTICS)}"
        )
    sizes = [int(s) for s in family_sizes]
    if not sizes or min(sizes) < 1:
        raise UserError(f"family_sizes must be positive counts, got {list(family_sizes)}")
    if not exact:
        if not n_permutations or n_permutations < 1:
            raise UserError("a random-permutation test needs n_permutations >= 1")
        return 1.0 / (1 + int(n_permutations))
    codes = np.repeat(np.arange(len(sizes)), sizes)
    ties = 1
    if statistic != "permdisp":
        for count in np.unique(sizes, return_counts=True)[1]:
            ties *= math.factorial(int(count))
    return ties / count_groupings(codes)


def all_groupings(codes: np.ndarray) -> np.ndarray:
    """Every distinct relabelling of the models with the same family sizes [P, N]; the
    observed grouping is among them."""
    sizes = np.bincount(codes)
    rows = []

    def place(label: int, free: tuple, grouping: list) -> None:
        if label == len(sizes) - 1:
            for i in free:
                grouping[i] = label
            rows.append(list(grouping))
            return
        for chosen in itertools.combinations(free, int(sizes[label])):
            for i in chosen:
                grouping[i] = label
            place(label + 1, tuple(i for i in free if i not in chosen), grouping)

    place(0, tuple(range(len(codes))), [0] * len(codes))
    return np.asarray(rows, dtype=codes.dtype)


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
    exact: bool | None = None,
    strict: bool = False,
) -> dict:
    """Are dissimilarities smaller within model families than between them?

    statistic='permanova': pseudo-F of the family grouping on D (Anderson 2001; larger =
        more structure). It reacts to differences in location AND in spread.
    statistic='permdisp': F of the distances to the family centroids in the PCoA space of D
        (Anderson 2006; larger = families differ more in spread). Read PERMANOVA with it.
    statistic='mantel': Pearson r between D and the different-family indicator
        (1 if two models are in different families; larger = more structure).
    exact: True enumerates every distinct grouping of the models with the family sizes
        (p = #{statistic >= observed} / #groupings); False draws n_permutations random
        permutations (p = (1 + #{permuted >= observed}) / (1 + n_permutations)); None
        (default): exact when there are at most MAX_EXACT_GROUPINGS groupings.
    families: {model: family} or a list in D's label order. Returns {statistic, p_value,
    test, n_permutations (groupings compared), exact} and, for permdisp, `dispersion`
    {family: mean distance to its centroid}.
    """
    if statistic not in STATISTICS:
        raise UserError(
            f"statistic={statistic!r} is not accepted; accepted: {', '.join(STATISTICS)}"
        )
    if not isinstance(n_permutations, int) or n_permutations < 1:
        raise UserError(f"n_permutations={n_permutations!r} must be an int >= 1")
    D = check_dissimilarity(D, strict=strict)
    values = D.to_numpy()
    labels, codes = _family_names_and_codes(families, list(D.index))
    n, a = len(codes), int(codes.max()) + 1
    if a < 2 or n - a < 1:
        raise UserError(
            f"the test needs at least 2 families and one family with 2+ models; got {a} "
            f"families for {n} models"
        )
    n_groupings = count_groupings(codes)
    if exact is None:
        exact = n_groupings <= MAX_EXACT_GROUPINGS
    if exact and n_groupings > 100 * MAX_EXACT_GROUPINGS:
        raise UserError(f"exact=True would enumerate {n_groupings} groupings; accepted: at "
                        f"most {100 * MAX_EXACT_GROUPINGS} (use exact=None or False)")
    if exact:
        perms = all_groupings(codes)
    else:
        rng = np.random.default_rng(seed)
        perms = np.stack([codes] + [rng.permutation(codes) for _ in range(n_permutations)])
    extra = {}
    if statistic == "permdisp":
        stats, z = permdisp_f(values**2, codes, perms)
        extra["dispersion"] = {str(labels[g]): float(z[codes == g].mean()) for g in range(a)}
    elif statistic == "permanova":
        onehot = (perms[:, :, None] == np.arange(a)[None, None, :]).astype(np.float64)
        stats = pseudo_f(values**2, onehot)
    else:
        i, j = np.triu_indices(n, k=1)
        stats = mantel_r(values[i, j], (perms[:, i] != perms[:, j]).astype(np.float64))
    is_observed = (perms == codes).all(axis=1)
    observed = float(stats[np.argmax(is_observed)])
    # Tolerance so that permutations giving the same grouping count as ties, not float noise.
    tol = 1e-10 * max(1.0, abs(observed)) if np.isfinite(observed) else 0.0
    if np.isnan(observed):  # e.g. PERMDISP with no spread inside any family: undefined
        p_value = float("nan")
    elif exact:
        p_value = float(np.mean(stats >= observed - tol))
    else:
        p_value = (1 + int(np.sum(stats[1:] >= observed - tol))) / (1 + n_permutations)
    return {
        "statistic": observed,
        "p_value": p_value,
        "test": statistic,
        "n_permutations": len(perms) if exact else n_permutations,
        "exact": bool(exact),
        **extra,
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
