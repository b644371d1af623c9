"""Louvain communities on a weighted model graph (python-louvain or networkx)."""

from __future__ import annotations

import warnings

import community as community_louvain
import networkx as nx
import numpy as np
import pandas as pd
from networkx.algorithms.community import modularity
from sklearn.metrics import adjusted_rand_score

from ..compare.frames import check_square_frame
from ..compare.presets import Conventions, conventions
from ..errors import UserError
from .tree import ignore_diagonal

WEIGHTS = ("similarity", "dissimilarity")
BACKENDS = ("python-louvain", "networkx")


def model_graph(W: pd.DataFrame, weight: str = "similarity", strict: bool = False,
                names=None) -> nx.Graph:
    """Undirected graph: one node per model (in label order), one edge per pair with weight > 0.

    weight='similarity': W holds similarities and is used as is.
    weight='dissimilarity': W holds dissimilarities; edge weight = 1 - W (as the published
    study). The diagonal is ignored (no self-loops); a dissimilarity diagonal that is not
    zero warns that it is ignored, or (strict=True) is refused. Negative weights are an error.
    """
    if weight not in WEIGHTS:
        raise UserError(f"weight={weight!r} is not accepted; accepted: {', '.join(WEIGHTS)}")
    W = check_square_frame(W, "W", symmetric=True,
                           zero_diagonal=strict and weight == "dissimilarity", names=names)
    if weight == "dissimilarity":
        W = ignore_diagonal(W, "W")
    values = W.to_numpy()
    if weight == "dissimilarity":
        values = 1.0 - values
    labels = list(W.index)
    upper = np.triu_indices(len(labels), k=1)
    negative = values[upper] < 0
    if negative.any():
        i, j = upper[0][negative][0], upper[1][negative][0]
        raise UserError(
            f"edge weight for ({labels[i]}, {labels[j]}) is {values[i, j]:g} < 0 with "
            f"weight='{weight}'; Louvain needs non-negative weights (clip or shift W first)"
        )
    graph = nx.Graph()
    graph.add_nodes_from(labels)
    graph.add_weighted_edges_from(
        (labels[i], labels[j], float(values[i, j]))
        for i, j in zip(*upper, strict=True)
        if values[i, j] > 0
    )
    return graph


def _canonical(partition: dict, labels: list[str]) -> dict[str, int]:
    """Renumber communities 0, 1, ... in order of their first model (stable across runs)."""
    ids: dict[int, int] = {}
    return {label: ids.setdefault(partition[label], len(ids)) for label in labels}


def communities(
    W: pd.DataFrame,
    resolution: float = 1.0,
    seed: int | None = None,
    weight: str = "similarity",
    backend: str | None = None,
    *,
    strict: bool = False,
    preset: str | Conventions | None = None,
    names=None,
) -> dict[str, int]:
    """Louvain communities {model: id}, ids 0, 1, ... by first model, deterministic for a
    given seed. W: a labelled DataFrame, or a NumPy array whose rows and columns are
    `names` (default "0", "1", ...).

    See `model_graph` for `weight` and `strict`. backend='python-louvain'
    (community.best_partition, the toolkit's default) or 'networkx'
    (nx.community.louvain_communities(G, resolution, seed), the published study's: preset
    'thesis' gives it with seed 42). seed None: the preset's, else 0. Higher resolution ->
    more, smaller communities. python-louvain 0.16 applies `resolution` inconsistently in its
    stopping rule (taynaud/python-louvain#98), so away from resolution 1 it warns; use
    backend='networkx' to sweep resolutions.
    """
    conv = conventions(preset) or conventions("toolkit")
    backend = backend if backend is not None else conv.louvain_backend
    if seed is None:
        seed = conv.louvain_seed if conv.louvain_seed is not None else 0
    if not resolution > 0:
        raise UserError(f"resolution={resolution!r} is not accepted; accepted: a number > 0")
    if backend not in BACKENDS:
        raise UserError(f"backend={backend!r} is not accepted; accepted: {', '.join(BACKENDS)}")
    graph = model_graph(W, weight, strict=strict, names=names)
    if graph.size(weight="weight") == 0:
        raise UserError("W has no positive off-diagonal weights: every model would be alone")
    if backend == "networkx":
        groups = nx.community.louvain_communities(
            graph, weight="weight", resolution=resolution, seed=seed
        )
        partition = {m: c for c, group in enumerate(groups) for m in group}
    else:
        if resolution != 1.0:
            warnings.warn(
                "python-louvain's Louvain is only consistent at resolution 1 "
                "(taynaud/python-louvain#98); use backend='networkx' for other resolutions",
                UserWarning,
                stacklevel=2,
            )
        partition = community_louvain.best_partition(
            graph, weight="weight", resolution=resolution, random_state=seed
        )
    return _canonical(partition, list(graph.nodes))


def resolution_sweep(
    W: pd.DataFrame,
    resolutions,
    seed: int = 0,
    weight: str = "similarity",
    backend: str = "networkx",
) -> pd.DataFrame:
    """How the partition changes with resolution (networkx Louvain by default, see
    `communities` for why).

    Columns: resolution, n_communities, modularity (standard, resolution 1, so rows are
    comparable), ari_vs_previous (adjusted Rand index against the previous row), partition.
    """
    graph = model_graph(W, weight)
    labels = list(graph.nodes)
    rows, previous = [], None
    for resolution in resolutions:
        parts = communities(W, resolution=resolution, seed=seed, weight=weight, backend=backend)
        groups = [{m for m in labels if parts[m] == c} for c in sorted(set(parts.values()))]
        ids = [parts[m] for m in labels]
        rows.append(
            {
                "resolution": float(resolution),
                "n_communities": len(groups),
                # rounded (and -0.0 made 0.0): networkx sums in set order, which varies
                # with PYTHONHASHSEED, so the last bits differ from run to run
                "modularity": round(modularity(graph, groups, weight="weight", resolution=1.0),
                                    12) + 0.0,
                "ari_vs_previous": (
                    float("nan") if previous is None else adjusted_rand_score(previous, ids)
                ),
                "partition": parts,
            }
        )
        previous = ids
    return pd.DataFrame(rows)
