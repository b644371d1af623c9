"""Pairwise similarity of explanations: per image, as models x models matrices, summaries."""

from .agreement import rank_agreement  # importing it registers rank, signed_rank, ...
from .consensus import ConsensusResult, consensus, consensus_accuracy_correlation, ssim
from .filters import FILTERS, image_filter
from .frames import check_square_frame
from .kappa import binarize  # importing it registers kappa
from .matrix import (
    SimilarityResult,
    cross_method_similarity,
    similarity_matrices,
    similarity_matrix,
)
from .metrics import METRICS, Metric, MetricProperties, register_metric
from .options import CompareOptions
from .preprocess import average_ranks, normalize
from .presets import PRESETS, Conventions, conventions
from .representation import CKAResult, cka, cka_matrix
from .similarity import (
    SimilarityDetails,
    aggregate,
    dissimilarity,
    pooled_kappa,
    similarity,
)
from .tables import read_matrix_csv, read_table_csv, table_provenance, write_table_csv

__all__ = [
    "CKAResult",
    "ConsensusResult",
    "cka",
    "cka_matrix",
    "consensus",
    "consensus_accuracy_correlation",
    "rank_agreement",
    "ssim",
    "FILTERS",
    "METRICS",
    "PRESETS",
    "CompareOptions",
    "Conventions",
    "Metric",
    "MetricProperties",
    "SimilarityDetails",
    "SimilarityResult",
    "aggregate",
    "average_ranks",
    "binarize",
    "check_square_frame",
    "conventions",
    "cross_method_similarity",
    "dissimilarity",
    "image_filter",
    "normalize",
    "pooled_kappa",
    "read_matrix_csv",
    "read_table_csv",
    "register_metric",
    "similarity",
    "similarity_matrices",
    "similarity_matrix",
    "table_provenance",
    "write_table_csv",
]
