"""Trustworthy numbers: bootstrap intervals, clustering stability, null baselines,
explanation faithfulness, sample-size and convergence analyses.

Pure functions on arrays, tensors and DataFrames; nothing here reads or writes files.
"""

from .bootstrap import (
    BootstrapResult,
    bootstrap_ensemble_gain,
    bootstrap_matrix,
    bootstrap_pairwise,
)
from .convergence import convergence_curve, map_change
from .faithfulness import DeletionInsertion, deletion_insertion_curves, pixel_ranks
from .nulls import (
    centre_bias_map,
    centre_bias_similarity,
    chance_corrected,
    derangement,
    null_table,
    shuffled_null,
)
from .randomization import (
    cascading_randomization,
    parameter_blocks,
    randomization_similarity,
    randomize_weights,
    sanity_scores,
)
from .resample import resample_counts, resample_indices
from .sample_size import sample_size_curve
from .stability import (
    cluster_consensus,
    coclustering_frequency,
    consensus_clustering,
    resolution_stability,
)

__all__ = [
    "BootstrapResult",
    "DeletionInsertion",
    "bootstrap_ensemble_gain",
    "bootstrap_matrix",
    "bootstrap_pairwise",
    "cascading_randomization",
    "centre_bias_map",
    "centre_bias_similarity",
    "chance_corrected",
    "cluster_consensus",
    "coclustering_frequency",
    "consensus_clustering",
    "convergence_curve",
    "deletion_insertion_curves",
    "derangement",
    "map_change",
    "null_table",
    "parameter_blocks",
    "pixel_ranks",
    "randomization_similarity",
    "randomize_weights",
    "resample_counts",
    "resample_indices",
    "resolution_stability",
    "sample_size_curve",
    "sanity_scores",
    "shuffled_null",
]
