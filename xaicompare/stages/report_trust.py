"""Report section of the trust stage: intervals, stability, nulls and faithfulness."""

from __future__ import annotations

from .. import report as rp
from .contexts import ReportContext
from .report_common import FigureWriter


def trust_section(ctx: ReportContext, save: FigureWriter) -> dict | None:
    """Intervals, stability, nulls and faithfulness: how far each number can be trusted."""
    if not ctx.trust.enabled:
        return None
    primary, results = ctx.compare.metrics[0], ctx.results
    figures, tables = [], []
    for method in ctx.methods:
        boot = results.trust_bootstrap(method, primary, missing_ok=True)
        if boot is not None:
            mean = boot[boot["statistic"] == "mean"]
            frames = {key: mean.pivot(index="model_a", columns="model_b", values=key)
                      .loc[list(ctx.models), list(ctx.models)]
                      for key in ("estimate", "low", "high")}
            figures.append({"path": save(rp.plot_interval_heatmap(
                frames["estimate"], frames["low"], frames["high"],
                title=f"{method} / {primary}: mean similarity [{ctx.trust.ci:.0%} CI]"),
                "trust", f"{method}_intervals"),
                "caption": f"Bootstrap over images ({ctx.trust.n_resamples} "
                           "resamples); hatched cells have wider-than-median intervals."})
        freq = results.coclustering(method, missing_ok=True)
        if freq is not None:
            for algorithm in freq.index.get_level_values(0).unique():
                figures.append({"path": save(rp.plot_matrix_heatmap(
                    freq.loc[algorithm], title=f"{method}: co-clustering ({algorithm})",
                    vmin=0, vmax=1, cbar_label="frequency"), "trust",
                    f"{method}_coclustering_{algorithm}"),
                    "caption": "How often two models share a cluster over bootstrap "
                               "resamples of the images (1 = always)."})
        nulls = results.trust_nulls(method, primary, missing_ok=True)
        if nulls is not None:
            tables.append({"table": nulls.round(3), "caption": f"{method}: observed {primary} "
                           "similarity beside its shuffled-image and centre-prior nulls, and "
                           "the chance-corrected scores"})
        sizes = results.sample_size(method, missing_ok=True)
        if sizes is not None:
            tables.append({"table": sizes.round(4), "caption": f"{method}: how the "
                           "dissimilarity matrix settles as the number of images grows"})
    for name, caption in (("faithfulness", "Deletion / insertion AUCs (lower deletion and "
                                           "higher insertion = more faithful; order=random is "
                                           "the null)"),
                          ("prediction_bootstrap", "Bootstrap intervals of error consistency "
                                                   "and diversities"),
                          ("ensemble_gain", "Ensemble gains with bootstrap intervals"),
                          ("randomization", "Model-parameter randomisation sanity scores")):
        table = getattr(results, name)(missing_ok=True)
        if table is not None:
            tables.append({"table": table.round(3), "caption": caption})
    return {"title": "Trustworthy numbers", "figures": figures, "tables": tables,
            "text": "Every similarity is shown with a bootstrap interval over images, every "
                    "clustering with its stability, and every observed similarity beside what "
                    "mismatched images or a centred blob would give by chance."}
