"""Low-dimensional embeddings of models for scatter plots: MDS and PCA."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.manifold import MDS

from ..errors import UserError
from .tree import check_dissimilarity

MDS_METHODS = ("classical", "smacof")


def _fix_signs(coords: np.ndarray) -> np.ndarray:
    """Make each axis' largest-magnitude entry positive (eigenvectors have arbitrary sign)."""
    pivot = np.abs(coords).argmax(axis=0)
    signs = np.sign(coords[pivot, np.arange(coords.shape[1])])
    return coords * np.where(signs == 0, 1, signs)


def _frame(coords: np.ndarray, labels, attrs: dict) -> pd.DataFrame:
    df = pd.DataFrame(
        coords, index=list(labels), columns=[f"dim{i + 1}" for i in range(coords.shape[1])]
    )
    df.attrs.update(attrs)
    return df


def classical_mds(D: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Torgerson scaling: coordinates from the top eigenpairs of B = -1/2 J D^2 J."""
    n = D.shape[0]
    centre = np.eye(n) - np.ones((n, n)) / n
    gram = -0.5 * centre @ (D**2) @ centre
    eigenvalues, vectors = np.linalg.eigh(gram)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = eigenvalues[order], vectors[:, order]
    top = np.clip(eigenvalues[:n_components], 0, None)
    return _fix_signs(vectors[:, :n_components] * np.sqrt(top)), eigenvalues


def mds(
    D: pd.DataFrame, n_components: int = 2, method: str = "classical", seed: int = 0
) -> pd.DataFrame:
    """Embed models so that Euclidean distances approximate D -> DataFrame [models, dims].

    classical: Torgerson MDS (deterministic; `seed` unused); attrs hold the eigenvalues and
    the share of positive eigenvalue mass kept. A warning says when D is not Euclidean.
    smacof: metric stress minimisation (sklearn MDS, random start from `seed`).
    """
    D = check_dissimilarity(D)
    n = len(D)
    if not isinstance(n_components, int) or not 1 <= n_components < n:
        raise UserError(f"n_components={n_components!r} is not accepted; accepted: 1..{n - 1}")
    if method not in MDS_METHODS:
        raise UserError(
            f"mds method={method!r} is not accepted; accepted: {', '.join(MDS_METHODS)}"
        )
    values = (D.to_numpy() + D.to_numpy().T) / 2
    if method == "classical":
        coords, eigenvalues = classical_mds(values, n_components)
        positive = eigenvalues[eigenvalues > 0].sum()
        if eigenvalues.min() < -1e-9 * max(abs(eigenvalues).max(), 1e-300):
            warnings.warn(
                "D is not Euclidean (negative eigenvalues in classical MDS); the embedding "
                "only approximates it",
                UserWarning,
                stacklevel=2,
            )
        kept = (
            float(np.clip(eigenvalues[:n_components], 0, None).sum() / positive)
            if positive > 0
            else float("nan")
        )
        return _frame(
            coords,
            D.index,
            {"method": "classical", "eigenvalues": eigenvalues.tolist(), "explained": kept},
        )
    params = inspect.signature(MDS).parameters
    kwargs = (
        {"metric": "precomputed", "metric_mds": True, "init": "random"}
        if "metric_mds" in params
        else {"dissimilarity": "precomputed", "metric": True}
    )
    model = MDS(n_components=n_components, n_init=4, random_state=seed, **kwargs)
    coords = _fix_signs(model.fit_transform(values))
    return _frame(
        coords, D.index, {"method": "smacof", "stress": float(model.stress_), "seed": seed}
    )


def pca_embedding(features, n_components: int = 2, names=None) -> pd.DataFrame:
    """PCA of per-model feature vectors [models, F] (DataFrame, or array with names).

    attrs['explained_variance_ratio'] lists the share of variance of each component.
    """
    if isinstance(features, pd.DataFrame):
        names = list(features.index) if names is None else names
        values = features.to_numpy(dtype=np.float64)
    else:
        values = np.asarray(features, dtype=np.float64)
    if values.ndim != 2:
        raise UserError(f"features must be [models, F], got shape {values.shape}")
    if not np.isfinite(values).all():
        raise UserError("features contain non-finite values")
    names = [f"model{i}" for i in range(len(values))] if names is None else list(names)
    if len(names) != len(values):
        raise UserError(f"{len(names)} names for {len(values)} feature rows")
    limit = min(values.shape)
    if not isinstance(n_components, int) or not 1 <= n_components <= limit:
        raise UserError(f"n_components={n_components!r} is not accepted; accepted: 1..{limit}")
    pca = PCA(n_components=n_components, svd_solver="full")
    coords = _fix_signs(pca.fit_transform(values))
    return _frame(
        coords,
        names,
        {"method": "pca", "explained_variance_ratio": pca.explained_variance_ratio_.tolist()},
    )
