"""Louvain communities against python-louvain called directly, and a CSV -> cluster pipeline."""

import community as community_louvain
import networkx as nx
import numpy as np
import pandas as pd
import pytest

from xaicompare.clustering import cluster, communities, resolution_sweep
from xaicompare.compare import read_matrix_csv, write_table_csv
from xaicompare.errors import UserError

LABELS = [f"m{i}" for i in range(9)]


@pytest.fixture
def W():
    """Similarities: three blocks of three models, strong inside, weak across (noisy)."""
    rng = np.random.default_rng(0)
    block = np.repeat(np.arange(3), 3)
    values = np.where(block[:, None] == block[None, :], 0.9, 0.1) + rng.uniform(0, 0.05, (9, 9))
    values = (values + values.T) / 2
    np.fill_diagonal(values, 1.0)
    return pd.DataFrame(values, index=LABELS, columns=LABELS)


def same_grouping(a: dict, b: dict) -> bool:
    keys = sorted(a)
    return all((a[x] == a[y]) == (b[x] == b[y]) for x in keys for y in keys)


def test_communities_equal_python_louvain_called_directly(W):
    graph = nx.Graph()
    graph.add_nodes_from(LABELS)
    for i in range(9):
        for j in range(i + 1, 9):
            graph.add_edge(LABELS[i], LABELS[j], weight=W.iloc[i, j])
    for seed in (0, 1, 2):
        direct = community_louvain.best_partition(graph, random_state=seed)
        assert same_grouping(direct, communities(W, seed=seed))
    with pytest.warns(UserWarning, match="python-louvain#98"):
        direct = community_louvain.best_partition(graph, resolution=0.5, random_state=0)
        assert same_grouping(direct, communities(W, resolution=0.5, seed=0))
    nx_groups = nx.community.louvain_communities(graph, resolution=1.5, seed=3)
    nx_direct = {m: c for c, group in enumerate(nx_groups) for m in group}
    assert same_grouping(nx_direct, communities(W, resolution=1.5, seed=3, backend="networkx"))
    parts = communities(W, seed=0)
    assert parts == communities(W, seed=0)  # deterministic
    assert [parts[m] for m in LABELS] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_dissimilarity_weights_are_one_minus_d(W):
    D = 1 - W
    assert communities(D, weight="dissimilarity") == communities(W, weight="similarity")
    with pytest.raises(UserError, match="non-negative"):
        communities(W - 0.5)
    with pytest.raises(UserError, match="accepted"):
        communities(W, weight="distance")


def test_resolution_sweep_reports_changes(W):
    sweep = resolution_sweep(W, [0.01, 1.0, 20.0], seed=0)
    assert list(sweep.columns) == [
        "resolution",
        "n_communities",
        "modularity",
        "ari_vs_previous",
        "partition",
    ]
    assert sweep["n_communities"].tolist()[0] == 1 and sweep["n_communities"].tolist()[1] == 3
    assert sweep["n_communities"].tolist()[2] == 9  # every model alone
    assert np.isnan(sweep["ari_vs_previous"][0])
    # modularity of the 3-block partition, checked with networkx directly
    graph = nx.from_pandas_adjacency(W.where(~np.eye(9, dtype=bool), 0.0))
    blocks = [set(LABELS[0:3]), set(LABELS[3:6]), set(LABELS[6:9])]
    assert sweep["modularity"][1] == pytest.approx(nx.community.modularity(graph, blocks))


def test_csv_to_cluster_to_cut_to_communities_pipeline(tmp_path, W):
    D = pd.DataFrame(1 - W.to_numpy() - np.eye(9) * 0.0, index=LABELS, columns=LABELS)
    D = D.where(~np.eye(9, dtype=bool), 0.0)
    path = write_table_csv(
        D, tmp_path / "d.csv", {"method": "gradcam", "metric": "cosine", "n_images": 10}
    )
    loaded = read_matrix_csv(path)
    assert loaded.attrs["provenance"] == {"method": "gradcam", "metric": "cosine", "n_images": 10}
    assert np.allclose(loaded.to_numpy(), D.to_numpy()) and list(loaded.index) == LABELS
    cut = cluster(loaded, "average").cut(k=3)
    parts = communities(loaded, weight="dissimilarity")
    assert same_grouping(cut, parts)
    assert cut == parts  # one numbering: 0-based, in order of each group's first model
    assert len(set(cut.values())) == 3
