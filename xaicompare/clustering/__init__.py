"""Group models by how alike they explain: trees, communities, embeddings, family tests."""

from .communities import communities, model_graph, resolution_sweep
from .embedding import mds, pca_embedding
from .reading import read_family_tests
from .stats import adjusted_rand_index, family_permutation_test, smallest_attainable_p
from .tree import LINKAGE_METHODS, Tree, check_dissimilarity, cluster, is_euclidean

__all__ = [
    "LINKAGE_METHODS",
    "Tree",
    "adjusted_rand_index",
    "check_dissimilarity",
    "cluster",
    "communities",
    "family_permutation_test",
    "is_euclidean",
    "mds",
    "model_graph",
    "pca_embedding",
    "read_family_tests",
    "resolution_sweep",
    "smallest_attainable_p",
]

