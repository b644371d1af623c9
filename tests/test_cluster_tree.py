"""Hierarchical clustering and embeddings against scipy / sklearn / hand computation."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import cophenet, fcluster, leaves_list, linkage
from scipy.spatial.distance import pdist, squareform
from sklearn.decomposition import PCA

from xaicompare.clustering import cluster, is_euclidean, mds, pca_embedding
from xaicompare.errors import UserError

LABELS = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0, 0.1, (3, 2)), rng.normal(3, 0.1, (3, 2))])


@pytest.fixture
def D(points):
    return pd.DataFrame(squareform(pdist(points)), index=LABELS, columns=LABELS)


@pytest.mark.parametrize("method", ["single", "complete", "average", "weighted", "ward"])
def test_tree_matches_scipy(D, method):
    tree = cluster(D, method=method)
    condensed = squareform(D.to_numpy())
    reference = linkage(condensed, method=method)
    assert np.allclose(tree.linkage, reference)
    assert tree.labels == LABELS
    assert tree.order == [LABELS[i] for i in leaves_list(reference)]
    assert tree.cophenetic_correlation == pytest.approx(cophenet(reference, condensed)[0])
    cut = tree.cut(k=2)
    assert same_partition(cut, fcluster(reference, 2, criterion="maxclust"))
    assert cut["a"] == cut["b"] == cut["c"] != cut["d"] == cut["e"] == cut["f"]
    assert cut["a"] == 0 and cut["d"] == 1  # 0-based, numbered by first model, as communities
    by_height = tree.cut(height=1.0)
    assert same_partition(by_height, fcluster(reference, 1.0, criterion="distance"))
    assert sorted(set(by_height.values())) == list(range(len(set(by_height.values()))))


def same_partition(cut: dict, scipy_ids) -> bool:
    """Same grouping as scipy's fcluster (which numbers from 1 in its own order)."""
    ours, theirs = list(cut.values()), list(scipy_ids)
    return all((ours[i] == ours[j]) == (theirs[i] == theirs[j])
               for i in range(len(ours)) for j in range(len(ours)))


def test_tree_accepts_columns_in_another_order(D):
    shuffled = D[LABELS[::-1]]
    assert np.allclose(cluster(shuffled).linkage, cluster(D).linkage)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda v: v.__setitem__((0, 1), v[0, 1] + 1), "not symmetric"),
        (lambda v: v.__setitem__((2, 2), 0.5), "zero diagonal"),
        (lambda v: (v.__setitem__((0, 1), -1.0), v.__setitem__((1, 0), -1.0)), "non-negative"),
        (lambda v: (v.__setitem__((0, 1), np.nan), v.__setitem__((1, 0), np.nan)), "non-finite"),
    ],
)
def test_invalid_dissimilarity_rejected(D, edit, message):
    values = D.to_numpy().copy()
    edit(values)
    with pytest.raises(UserError, match=message):  # strict: a non-zero diagonal is refused
        cluster(pd.DataFrame(values, index=LABELS, columns=LABELS), strict=True)


def test_mismatched_labels_and_bad_arguments(D):
    other = D.copy()
    other.columns = LABELS[:-1] + ["z"]
    with pytest.raises(UserError, match="labels differ"):
        cluster(other)
    with pytest.raises(UserError, match="accepted"):
        cluster(D, method="avg")
    with pytest.raises(UserError, match="exactly one"):
        cluster(D).cut()
    with pytest.raises(UserError, match="1..6"):
        cluster(D).cut(k=7)


def test_ward_warns_only_for_non_euclidean(D):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cluster(D, method="ward")  # Euclidean: no warning
    # violates the triangle inequality -> not Euclidean
    bad = pd.DataFrame([[0, 1, 5], [1, 0, 1], [5, 1, 0]], index=list("xyz"), columns=list("xyz"))
    assert not is_euclidean(bad.to_numpy(dtype=float)) and is_euclidean(D.to_numpy())
    with pytest.warns(UserWarning, match="not Euclidean"):
        cluster(bad, method="ward")


def test_classical_mds_recovers_euclidean_distances(D, points):
    emb = mds(D, n_components=2)
    assert list(emb.index) == LABELS and list(emb.columns) == ["dim1", "dim2"]
    assert np.allclose(squareform(pdist(emb.to_numpy())), D.to_numpy())
    assert emb.attrs["explained"] == pytest.approx(1.0)
    # hand check: the first axis equals the first principal component of the centred points
    pc1 = PCA(1).fit_transform(points)[:, 0]
    assert np.allclose(np.abs(emb["dim1"]), np.abs(pc1))
    smacof = mds(D, n_components=2, method="smacof", seed=0)
    assert np.allclose(squareform(pdist(smacof.to_numpy())), D.to_numpy(), atol=0.05)


def test_pca_embedding_matches_sklearn():
    features = np.random.default_rng(1).normal(size=(5, 12))
    emb = pca_embedding(features, names=list("vwxyz"))
    reference = PCA(2).fit(features)
    assert np.allclose(np.abs(emb.to_numpy()), np.abs(reference.transform(features)))
    assert np.allclose(emb.attrs["explained_variance_ratio"], reference.explained_variance_ratio_)


def test_top_level_cluster_works_after_the_subpackage_is_imported():
    import importlib

    import pandas as pd

    import xaicompare as xc

    importlib.import_module("xaicompare.clustering")  # rebinds xc.cluster to the subpackage
    D = pd.DataFrame([[0.0, 1.0, 4.0], [1.0, 0.0, 4.0], [4.0, 4.0, 0.0]],
                     index=list("abc"), columns=list("abc"))
    assert xc.cluster(D).cut(k=2) == xc.cluster(D, method="average").cut(k=2)
    assert xc.cluster(D).cut(k=2)["a"] == xc.cluster(D).cut(k=2)["b"]


def test_numpy_matrices_are_accepted_with_names(D):
    """One kind of input per kind of result: a labelled DataFrame or an array + names."""
    from xaicompare.clustering import communities

    from_frame = cluster(D).cut(k=2)
    assert cluster(D.to_numpy(), names=list(D.index)).cut(k=2) == from_frame
    by_position = cluster(D.to_numpy()).cut(k=2)  # default names "0", "1", ...
    assert list(by_position.values()) == list(from_frame.values())
    assert list(by_position) == [str(i) for i in range(len(D))]
    W = np.exp(-D)  # a similarity in (0, 1]
    assert communities(W.to_numpy(), names=list(D.index), weight="similarity") == \
        communities(W, weight="similarity")
    with pytest.raises(UserError, match="names for a matrix"):
        cluster(D.to_numpy(), names=["a"])
    with pytest.raises(UserError, match="models x models matrix"):
        cluster("not a matrix")
