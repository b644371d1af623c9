"""Hierarchical clustering of models from a labelled dissimilarity matrix."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import cophenet, fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform

from ..compare.frames import check_square_frame
from ..errors import UserError

LINKAGE_METHODS = ("single", "complete", "average", "weighted", "ward", "centroid", "median")
# These assume the dissimilarities are Euclidean distances between points.
EUCLIDEAN_METHODS = ("ward", "centroid", "median")


def check_dissimilarity(D, name: str = "D", strict: bool = False, names=None) -> pd.DataFrame:
    """Symmetric, non-negative, finite, same labels on both axes; the diagonal is set to 0.

    A diagonal that is not zero (e.g. a published matrix whose self-dissimilarities came
    from two runs of one model) is ignored with a warning, as scipy's linkage ignores it;
    strict=True refuses it instead.
    """
    D = check_square_frame(D, name, symmetric=True, zero_diagonal=strict, non_negative=True,
                           names=names)
    return ignore_diagonal(D, name)


def ignore_diagonal(D: pd.DataFrame, name: str) -> pd.DataFrame:
    """D with a zero diagonal; warns, naming the largest entry, if it was not ~0."""
    values = D.to_numpy()
    diagonal = np.abs(np.diag(values))
    if not np.allclose(diagonal, 0, atol=1e-8, rtol=0):
        i = int(np.argmax(diagonal))
        warnings.warn(
            f"{name} has a non-zero diagonal ({int((diagonal > 1e-8).sum())} entries, largest "
            f"[{D.index[i]}, {D.index[i]}]={values[i, i]:g}); it is ignored (a model's "
            "distance to itself is taken as 0). Pass strict=True to refuse such a matrix.",
            UserWarning,
            stacklevel=3,
        )
    values = values.copy()
    np.fill_diagonal(values, 0.0)
    return pd.DataFrame(values, index=D.index, columns=D.columns)


def is_euclidean(D: np.ndarray, rtol: float = 1e-9) -> bool:
    """True if D can be realised as distances between points in Euclidean space.

    Classical MDS criterion: B = -1/2 J D^2 J must be positive semi-definite.
    """
    n = D.shape[0]
    centre = np.eye(n) - np.ones((n, n)) / n
    gram = -0.5 * centre @ (D**2) @ centre
    eigenvalues = np.linalg.eigvalsh(gram)
    scale = max(abs(eigenvalues).max(), 1e-300)
    return bool(eigenvalues.min() >= -rtol * scale)


@dataclass(frozen=True)
class Tree:
    """A dendrogram over labelled models (wraps a scipy linkage matrix)."""

    linkage: np.ndarray  # scipy linkage matrix [n - 1, 4]
    labels: list[str]
    method: str
    condensed: np.ndarray  # the condensed dissimilarities the tree was built from

    @cached_property
    def order(self) -> list[str]:
        """Leaf order left to right (use it to order heatmap rows and columns)."""
        return [self.labels[i] for i in leaves_list(self.linkage)]

    @cached_property
    def cophenetic_correlation(self) -> float:
        """Pearson correlation between cophenetic and input dissimilarities."""
        return float(cophenet(self.linkage, self.condensed)[0])

    def cut(self, k: int | None = None, height: float | None = None) -> dict[str, int]:
        """Flat clusters {model: id}: into at most k clusters, or at a height.

        Ids are 0, 1, ... in order of each cluster's first model in `labels`, the same
        numbering as `communities()` (scipy's fcluster numbers from 1 in its own order).
        With ties in merge heights scipy's maxclust can return fewer than k clusters.
        """
        if (k is None) == (height is None):
            raise UserError("Tree.cut needs exactly one of k= or height=")
        if k is not None:
            if not isinstance(k, int | np.integer) or not 1 <= k <= len(self.labels):
                raise UserError(
                    f"k={k!r} is not accepted; accepted: an int in 1..{len(self.labels)}"
                )
            ids = fcluster(self.linkage, k, criterion="maxclust")
        else:
            if not np.isfinite(height) or height < 0:
                raise UserError(f"height={height!r} is not accepted; accepted: a number >= 0")
            ids = fcluster(self.linkage, height, criterion="distance")
        first: dict[int, int] = {}  # renumber 0, 1, ... by first model, as communities()
        return {label: first.setdefault(int(i), len(first))
                for label, i in zip(self.labels, ids, strict=True)}


def cluster(D: pd.DataFrame, method: str = "average", *, strict: bool = False,
            names=None) -> Tree:
    """Agglomerative clustering of the models in dissimilarity matrix D: a labelled
    DataFrame, or a NumPy array whose rows and columns are `names` (default "0", "1", ...).

    method: single | complete | average | weighted | ward | centroid | median. The last
    three assume Euclidean distances; they warn when D is not Euclidean.
    strict: refuse a D whose diagonal is not zero (default: ignore it, with a warning).
    """
    if method not in LINKAGE_METHODS:
        raise UserError(
            f"linkage method {method!r} is not accepted; accepted: {', '.join(LINKAGE_METHODS)}"
        )
    D = check_dissimilarity(D, strict=strict, names=names)
    if len(D) < 2:
        raise UserError(f"clustering needs at least 2 models, got {len(D)}")
    values = D.to_numpy()
    if method in EUCLIDEAN_METHODS and not is_euclidean(values):
        warnings.warn(
            f"linkage '{method}' assumes Euclidean distances, but D is not Euclidean "
            "(its classical-MDS Gram matrix has negative eigenvalues); merge heights may "
            "be meaningless. Consider 'average' or 'complete'.",
            UserWarning,
            stacklevel=2,
        )
    # The diagonal is 0 now; force exact symmetry for squareform.
    values = (values + values.T) / 2
    np.fill_diagonal(values, 0.0)
    condensed = squareform(values, checks=False)
    return Tree(linkage(condensed, method=method), list(D.index), method, condensed)
