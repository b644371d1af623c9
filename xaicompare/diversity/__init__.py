"""Prediction-level diversity: per-model metrics and calibration, pairwise and set
diversity, ensembles, corruptions and retention, and their joint view with explanations.

Pure functions on numpy arrays / torch tensors; nothing here reads or writes files.
"""

from ..data.corruptions import (
    CORRUPTIONS,
    PARAMS,
    SEVERITIES,
    corrupt,
    list_corruptions,
    register_corruption,
)
from .calibration import (
    expected_calibration_error,
    model_metrics,
    reliability_data,
    to_log_probs,
    to_probs,
    top_k_accuracy,
)
from .cue_conflict import cued_classes, texture_reliance
from .disagreement import explanation_disagreement, prediction_disagreement, top_disagreements
from .ensembles import ensemble_probs, ensemble_table
from .joint import mantel_test, similarity_by_outcome
from .pairwise import (
    PAIRWISE_METRICS,
    ce_diversity,
    ce_diversity_matrix,
    diversity_components,
    error_consistency,
    error_consistency_matrix,
    pairwise_matrix,
    zero_one_diversity,
    zero_one_diversity_matrix,
)
from .robustness import (
    evaluate_corruptions,
    explanation_change,
    explanation_change_per_image,
    retention_table,
)
from .stratified import stratified_agreement

__all__ = [
    "CORRUPTIONS",
    "cued_classes",
    "texture_reliance",
    "PAIRWISE_METRICS",
    "PARAMS",
    "SEVERITIES",
    "ce_diversity",
    "ce_diversity_matrix",
    "corrupt",
    "diversity_components",
    "ensemble_probs",
    "ensemble_table",
    "error_consistency",
    "error_consistency_matrix",
    "evaluate_corruptions",
    "expected_calibration_error",
    "explanation_change",
    "explanation_change_per_image",
    "explanation_disagreement",
    "list_corruptions",
    "mantel_test",
    "model_metrics",
    "pairwise_matrix",
    "prediction_disagreement",
    "register_corruption",
    "reliability_data",
    "retention_table",
    "similarity_by_outcome",
    "stratified_agreement",
    "to_log_probs",
    "to_probs",
    "top_disagreements",
    "top_k_accuracy",
    "zero_one_diversity",
    "zero_one_diversity_matrix",
]
