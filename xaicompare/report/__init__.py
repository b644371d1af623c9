"""Figures, explanation atlases and the self-contained HTML report.

Like seaborn: every single-panel plotting function takes `ax=None` and returns the Axes it
drew on; multi-panel ones (atlas, retention curves, localisation, the matrix trio, the
histogram grid) take `axes=` where that makes sense and return the Figure. Data may be a
DataFrame or a NumPy array, extra keywords go to the underlying matplotlib / scipy call, and
your rcParams rule; `style()` is the house look and `display_names()` the names shown.
Nothing calls pyplot.show, so figures embed in notebooks and in your own layouts.
"""

from .atlas import (
    plot_atlas,
    plot_depth_atlas,
    robust_scale,
    write_atlas_pages,
    write_disagreement_atlas,
)
from .figures_diversity import (
    plot_cue_conflict,
    plot_gain_vs_diversity,
    plot_localisation,
    plot_reliability_diagram,
    plot_retention_curves,
)
from .figures_lenses import (
    plot_agreement_sweep,
    plot_consensus_vs_accuracy,
    plot_matrix_trio,
    plot_strata,
)
from .figures_matrix import plot_dissimilarity_heatmap, plot_interval_heatmap, plot_matrix_heatmap
from .figures_methods import plot_family_test_summary, plot_method_agreement
from .figures_paper import (
    PaperInputs,
    plot_family_tests,
    plot_similarity_with_dendrogram,
    write_paper_figures,
)
from .figures_structure import (
    plot_community_graph,
    plot_dendrogram,
    plot_embedding,
    plot_similarity_histograms,
)
from .html import build_report, figure_anchor, frame_to_table
from .names import display_names, method_label, model_label
from .style import (
    DIVERGING_CMAP,
    FAMILY_COLORS,
    OKABE_ITO,
    SEQUENTIAL_CMAP,
    family_palette,
    paper_style,
    save_figure,
    style,
)

__all__ = [
    "PaperInputs",
    "plot_family_tests",
    "plot_similarity_with_dendrogram",
    "write_paper_figures",
    "DIVERGING_CMAP",
    "FAMILY_COLORS",
    "OKABE_ITO",
    "SEQUENTIAL_CMAP",
    "build_report",
    "display_names",
    "method_label",
    "model_label",
    "style",
    "family_palette",
    "figure_anchor",
    "frame_to_table",
    "paper_style",
    "plot_atlas",
    "plot_community_graph",
    "plot_cue_conflict",
    "plot_dendrogram",
    "plot_depth_atlas",
    "plot_dissimilarity_heatmap",
    "plot_embedding",
    "plot_family_test_summary",
    "plot_gain_vs_diversity",
    "plot_interval_heatmap",
    "plot_localisation",
    "plot_matrix_heatmap",
    "plot_method_agreement",
    "plot_reliability_diagram",
    "plot_retention_curves",
    "plot_agreement_sweep",
    "plot_consensus_vs_accuracy",
    "plot_matrix_trio",
    "plot_strata",
    "plot_similarity_histograms",
    "robust_scale",
    "save_figure",
    "write_atlas_pages",
    "write_disagreement_atlas",
]
