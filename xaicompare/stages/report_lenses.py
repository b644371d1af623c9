"""Report section of the comparison lenses (stages/lenses.py wrote the tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import report as rp
from ..report import findings as fd
from .contexts import ReportContext
from .report_common import FigureWriter


def primary_rows(agreement: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The Mantel rows between the error, representation and explanation matrices of the
    primary metric (the CSV holds every metric: C(2 + methods x metrics, 2) rows)."""
    def keep(name: str) -> bool:
        return not name.startswith("explanation ") or name.endswith(f"/{metric}")

    return agreement[agreement["matrix_a"].map(keep) & agreement["matrix_b"].map(keep)]


def lenses_section(ctx: ReportContext, save: FigureWriter) -> dict | None:
    """Explanation vs representation vs errors, consensus, and agreement by outcome."""
    method, metric = next(iter(ctx.methods)), ctx.compare.metrics[0]
    results = ctx.results
    explanation = results.dissimilarity(method, metric, missing_ok=True)
    cka = results.cka("linear", missing_ok=True)
    errors = results.diversity("error_consistency", missing_ok=True)
    if explanation is None or (cka is None and errors is None):
        return None
    tree = results.tree(method, metric, missing_ok=True)
    order = list(tree.order) if tree is not None else list(explanation.index)
    order += [m for m in explanation.index if m not in order]  # left out of the clustering
    matrices = {f"explanation ({method}, {metric})": explanation}
    if cka is not None:
        matrices["representation (1 - CKA)"] = 1.0 - cka
    if errors is not None:
        matrices["errors (1 - error consistency)"] = 1.0 - errors
    figures = [{"path": save(rp.plot_matrix_trio(matrices, order, ctx.families), "lenses",
                             "matrix_trio"),
                "caption": "The same models in the same order: how differently they explain, "
                           "how differently they represent the images (debiased linear CKA of "
                           "the classifier inputs) and how differently they err."}]
    tables, text = [], []
    agreement = results.matrix_agreement(missing_ok=True)
    if agreement is not None and len(agreement):
        shown = primary_rows(agreement, metric)
        tables.append({"table": shown.round(3).reset_index(drop=True),
                       "reading": fd.matrix_agreement_reading(shown),
                       "caption": f"Mantel tests between the matrices ({metric}; every metric "
                                  "in tables/joint/matrix_agreement.csv)"})
    scores = results.consensus(method, missing_ok=True)
    metrics = results.diversity("model_metrics", missing_ok=True)
    if scores is not None and metrics is not None and "accuracy" in metrics:
        figures.append({"path": save(rp.plot_consensus_vs_accuracy(
            scores, metrics["accuracy"].to_dict(), ctx.families), "lenses", "consensus"),
            "caption": f"Consensus ({method}): how close each model's map is to the mean of "
                       "the other models' maps, against its accuracy."})
        corr = results.consensus_accuracy(method, missing_ok=True)
        if corr is not None and np.isfinite(corr["spearman"].iloc[0]):
            text.append(f"Consensus score and accuracy ({method}): Spearman "
                        f"{corr['spearman'].iloc[0]:.2f} (p = {corr['p_value'].iloc[0]:.3g}, "
                        f"{int(corr['n_models'].iloc[0])} models).")
    strata = results.stratified_agreement(method, metric, missing_ok=True)
    if strata is not None and len(strata):
        figures.append({"path": save(rp.plot_strata(strata), "lenses", "strata"),
                        "caption": f"{method} / {metric} agreement of each pair on the images "
                                   "both models get right, one gets right, neither gets right "
                                   "(hollow: too few images for an interval)."})
    sweep = results.agreement_sweep(method, missing_ok=True)
    if sweep is not None and len(sweep):
        figures.append({"path": save(rp.plot_agreement_sweep(sweep), "lenses", "topk_sweep"),
                        "caption": f"{method}: do the models agree on their top-k pixels, "
                                   "their signs and their order, and does it depend on k? "
                                   "(Krishna et al. 2022: feature, sign, rank and signed "
                                   "rank agreement, mean over model pairs.)"})
    return {"title": "Explanations, representations and errors", "figures": figures,
            "tables": tables, "text": "\n\n".join(text) or None}
