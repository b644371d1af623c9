"""How stable is the clustering of models? Co-clustering over bootstrap resamples of
images, consensus clustering, and Louvain stability across resolutions and seeds."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from ..clustering.communities import communities
from ..clustering.tree import LINKAGE_METHODS, cluster
from ..compare.frames import check_square_frame
from ..errors import UserError
from ._inputs import check_square, per_image_matrix
from .resample import check_resampling, resample_counts, weighted_moments

ALGORITHMS = ("hierarchical", "louvain")
LOUVAIN_WEIGHTS = ("one_minus_dissimilarity", "similarity")


def _partition(D: np.ndarray, S: np.ndarray, labels, algorithm, k, method, resolution, weight,
               louvain_seed, backend) -> np.ndarray:
    """Cluster ids per model for one dissimilarity D (and mean similarity S) matrix."""
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0.0)
    if algorithm == "hierarchical":
        with warnings.catch_warnings():  # the Euclidean warning would repeat per resample
            warnings.simplefilter("ignore", UserWarning)
            tree = cluster(pd.DataFrame(np.maximum(D, 0.0), index=labels, columns=labels),
                           method)
        parts = tree.cut(k=k)
    else:
        if weight == "one_minus_dissimilarity":  # as the cluster stage: 1 - min(D, 1)
            W, kind = pd.DataFrame(np.minimum(D, 1.0), index=labels, columns=labels), "dissimilarity"
        else:
            S = np.maximum((S + S.T) / 2, 0.0)
            W, kind = pd.DataFrame(S, index=labels, columns=labels), "similarity"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # python-louvain resolution note
                parts = communities(W, resolution=resolution, seed=louvain_seed, weight=kind,
                                    backend=backend)
        except UserError:  # no positive edge: every model alone
            parts = {m: i for i, m in enumerate(labels)}
    return np.array([parts[m] for m in labels])


def coclustering_frequency(
    per_image,
    k: int | None = None,
    method: str = "average",
    algorithm: str = "hierarchical",
    resolution: float = 1.0,
    weight: str = "one_minus_dissimilarity",
    n_resamples: int = 200,
    seed: int = 0,
    louvain_seed: int = 0,
    backend: str = "python-louvain",
    names=None,
    ddof: int = 0,
) -> pd.DataFrame:
    """[M, M] share of bootstrap resamples (of images) in which two models share a cluster.

    per_image: [M, M, N] per-image similarities (or a compare.SimilarityResult). Each
    resample reweights the images, recomputes the dissimilarity sqrt((1-mean)^2 + std^2)
    (and mean similarity), and clusters: algorithm='hierarchical' cuts `method` linkage
    into k clusters; algorithm='louvain' runs communities(resolution, louvain_seed,
    backend) on the graph `weight` names (as the cluster stage: 1 - min(D, 1), or the mean
    similarity clipped at 0). The Louvain seed is fixed so only the images vary.
    Resamples in which some pair has no usable image are skipped; attrs['n_used'] counts
    the rest, attrs['reference'] holds the partition on all images.
    """
    check_resampling(n_resamples, seed, 0.5)
    if algorithm not in ALGORITHMS:
        raise UserError(f"algorithm={algorithm!r} is not accepted; accepted: {', '.join(ALGORITHMS)}")
    values, rows, cols = per_image_matrix(per_image, names)
    check_square(values, rows, cols, "coclustering_frequency")
    m, _, n = values.shape
    if algorithm == "hierarchical":
        if method not in LINKAGE_METHODS:
            raise UserError(f"linkage method {method!r} is not accepted; accepted: "
                            f"{', '.join(LINKAGE_METHODS)}")
        if not isinstance(k, int | np.integer) or not 1 <= k <= m:
            raise UserError(f"k={k!r} is not accepted; accepted: an int in 1..{m}")
    elif weight not in LOUVAIN_WEIGHTS:
        raise UserError(f"weight={weight!r} is not accepted; accepted: {', '.join(LOUVAIN_WEIGHTS)}")
    series = values.reshape(m * m, n)
    off_diagonal = ~np.eye(m, dtype=bool)
    weights = np.vstack([np.ones((1, n)), resample_counts(n, n_resamples, seed)])
    mean, std = weighted_moments(series, weights, ddof)
    mean, std = mean.reshape(-1, m, m), std.reshape(-1, m, m)
    D = np.sqrt((1 - mean) ** 2 + std**2)
    if not np.isfinite(D[0][off_diagonal]).all():
        raise UserError("some pairs have no usable image at all (undefined dissimilarity); "
                        "drop those models first")
    args = (rows, algorithm, k, method, resolution, weight, louvain_seed, backend)
    together = np.zeros((m, m))
    n_used = 0
    for r in range(1, len(weights)):
        if not np.isfinite(D[r][off_diagonal]).all():
            continue
        ids = _partition(D[r], mean[r], *args)
        together += ids[:, None] == ids[None, :]
        n_used += 1
    freq = pd.DataFrame(together / max(n_used, 1), index=rows, columns=rows)
    reference = _partition(D[0], mean[0], *args)
    freq.attrs.update({"n_used": n_used, "n_resamples": n_resamples, "seed": seed,
                       "algorithm": algorithm, "k": k, "method": method,
                       "resolution": resolution, "weight": weight,
                       "reference": dict(zip(rows, reference.tolist(), strict=True))})
    return freq


def consensus_clustering(freq: pd.DataFrame, k: int, method: str = "average") -> dict[str, int]:
    """Clusters {model: id} of the consensus: `method` linkage on 1 - co-clustering frequency,
    cut into k clusters (Monti et al. 2003)."""
    freq = check_square_frame(freq, "freq", symmetric=True)
    values = freq.to_numpy()
    if (values < -1e-12).any() or (values > 1 + 1e-12).any():
        raise UserError("freq must hold frequencies in [0, 1]")
    D = 1.0 - values
    np.fill_diagonal(D, 0.0)
    return cluster(pd.DataFrame(D, index=freq.index, columns=freq.columns), method).cut(k=k)


def cluster_consensus(freq: pd.DataFrame, partition: dict) -> pd.DataFrame:
    """Per cluster of `partition` {model: id}: size and mean co-clustering frequency of its
    model pairs (1: always together; Monti et al.'s cluster consensus). Singletons: NaN."""
    freq = check_square_frame(freq, "freq", symmetric=True)
    rows = []
    for cid in sorted(set(partition.values())):
        members = [m for m in freq.index if partition.get(m) == cid]
        block = freq.loc[members, members].to_numpy()
        pairs = block[np.triu_indices(len(members), 1)]
        rows.append({"cluster": cid, "size": len(members), "members": tuple(members),
                     "consensus": float(pairs.mean()) if pairs.size else np.nan})
    return pd.DataFrame(rows)


def resolution_stability(
    W: pd.DataFrame,
    resolutions,
    seeds=(0, 1, 2, 3, 4),
    weight: str = "similarity",
    backend: str = "networkx",
) -> pd.DataFrame:
    """How stable Louvain partitions are across seeds (per resolution) and resolutions.

    One row per resolution: n_communities_min/max over seeds, n_distinct (partitions over
    seeds), ari_across_seeds (mean pairwise adjusted Rand index between seeds; 1 = the seed
    does not matter), ari_vs_next (mean ARI between this and the next resolution's
    partitions over all seed pairs). attrs['ari_overall']: mean pairwise ARI over every
    (resolution, seed) partition.
    """
    resolutions = [float(r) for r in resolutions]
    seeds = list(seeds)
    if not resolutions or not seeds:
        raise UserError("resolution_stability needs at least one resolution and one seed")
    labels = list(check_square_frame(W, "W", symmetric=True).index)
    parts = {}
    for res, s in itertools.product(resolutions, seeds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            p = communities(W, resolution=res, seed=s, weight=weight, backend=backend)
        parts[res, s] = [p[m] for m in labels]

    def mean_ari(pairs) -> float:
        values = [adjusted_rand_score(parts[a], parts[b]) for a, b in pairs]
        return float(np.mean(values)) if values else np.nan

    rows = []
    for i, res in enumerate(resolutions):
        counts = [len(set(parts[res, s])) for s in seeds]
        distinct = {tuple(parts[res, s]) for s in seeds}
        nxt = resolutions[i + 1] if i + 1 < len(resolutions) else None
        rows.append({
            "resolution": res,
            "n_communities_min": min(counts),
            "n_communities_max": max(counts),
            "n_distinct": len(distinct),
            "ari_across_seeds": mean_ari(
                ((res, a), (res, b)) for a, b in itertools.combinations(seeds, 2)),
            "ari_vs_next": np.nan if nxt is None else mean_ari(
                ((res, a), (nxt, b)) for a, b in itertools.product(seeds, seeds)),
        })
    out = pd.DataFrame(rows)
    out.attrs["ari_overall"] = mean_ari(itertools.combinations(list(parts), 2))
    out.attrs["seeds"] = seeds
    return out
