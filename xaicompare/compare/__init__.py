"""Pairwise similarity of explanations: per image, as models x models matrices, summaries."""

from . import agreement  # noqa: F401  (registers rank, signed_rank, topk_iou)
from .filters import FILTERS, image_filter
from .frames import check_square_frame
from .matrix import (
    SimilarityResult,
    cross_method_similarity,
    similarity_matrices,
    similarity_matrix,
)
from .metrics import METRICS, Metric, MetricProperties, binarize, register_metric
from .options import CompareOptions
from .preprocess import average_ranks, normalize
from .similarity import (
    SimilarityDetails,
    aggregate,
    dissimilarity,
    pooled_kappa,
    similarity,
)
from .tables import read_matrix_csv, write_table_csv

__all__ = [
    "FILTERS",
    "METRICS",
    "CompareOptions",
    "Metric",
    "MetricProperties",
    "SimilarityDetails",
    "SimilarityResult",
    "aggregate",
    "average_ranks",
    "binarize",
    "check_square_frame",
    "cross_method_similarity",
    "dissimilarity",
    "image_filter",
    "normalize",
    "pooled_kappa",
    "read_matrix_csv",
    "register_metric",
    "similarity",
    "similarity_matrices",
    "similarity_matrix",
    "write_table_csv",
]
