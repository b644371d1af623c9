"""Report sections of prediction diversity and localisation."""

from __future__ import annotations

from .. import report as rp
from ..report import findings as fd
from .contexts import ReportContext
from .report_common import FigureWriter


def diversity_section(ctx: ReportContext, save: FigureWriter) -> dict | None:
    results = ctx.results
    metrics = results.diversity("model_metrics", missing_ok=True)
    if metrics is None:
        return None
    figures, tables, tests = [], [metrics], []
    for name, title, center in (("error_consistency", "Error consistency (kappa)", 0.0),
                                ("zero_one_components",
                                 "Row model right where column model wrong", None)):
        M = results.diversity(name, missing_ok=True)
        if M is not None:
            figures.append({"path": save(rp.plot_matrix_heatmap(M, title=title, center=center),
                                         "diversity", name), "caption": title})
    ensembles = results.diversity("ensembles", missing_ok=True)
    if ensembles is not None and len(ensembles):
        figures.append({"path": save(rp.plot_gain_vs_diversity(ensembles), "diversity",
                                     "gain_vs_diversity"),
                        "caption": "Ensemble accuracy gain over its best member vs the "
                                   "members' 0/1 diversity."})
        tables.append({"table": ensembles.round(3), "caption": "Softmax-averaged ensembles"})
    retention = results.diversity("retention", missing_ok=True)
    if retention is not None:
        figures.append({"path": save(rp.plot_retention_curves(
            retention, ensembles=["ensemble(all)"]), "diversity", "retention"),
            "caption": "Accuracy retention (corrupted / clean accuracy) over severity."})
    cue = results.diversity("cue_conflict", missing_ok=True)
    if cue is not None:
        figures.append({"path": save(rp.plot_cue_conflict(cue), "diversity", "cue_conflict"),
                        "caption": "Cue-conflict images (object texture cued with another "
                                   "class in the cue-conflict training split): does each "
                                   "model decide by shape or by texture?"})
        tables.append({"table": cue.round(3), "caption": "Texture reliance on cue-conflict "
                       "images (shape bias = shape / (shape + texture) decisions)"})
    reliability = results.diversity("reliability", missing_ok=True)
    if reliability is not None:
        figures.append({"path": save(rp.plot_reliability_diagram(reliability), "diversity",
                                     "reliability"), "caption": "Reliability diagram."})
    mantel = results.mantel(missing_ok=True)
    if mantel is not None and len(mantel):
        tests.append({"caption": "Mantel tests: explanation dissimilarity vs error consistency",
                      "reading": fd.explanation_error_reading(mantel),
                      "tests": [{"name": f"{row['method']}/{row['metric']}",
                                 "statistic": row["r"], "p_value": row["p_value"]}
                                for _, row in mantel.iterrows()]})
    return {"title": "Prediction diversity", "figures": figures, "tables": tables,
            "tests": tests,
            "text": "Do models that explain alike also err alike? The Mantel tests correlate "
                    "explanation dissimilarity with error consistency (one-sided: a negative "
                    "r means models with similar explanations make the same mistakes)."}


def localisation_section(ctx: ReportContext, save: FigureWriter) -> dict | None:
    table = ctx.results.localisation(missing_ok=True)
    if table is None:
        return None
    table = table.reset_index(drop=True) if "model" in table.columns else table.reset_index()
    return {"title": "Localisation against object masks",
            "text": "Pointing game: share of images whose map maximum lies on the object. "
                    "Mass in mask: share of positive attribution on the object. The object's "
                    "area is the chance level for both.",
            "figures": [{"path": save(rp.plot_localisation(table), "localisation"),
                         "caption": "Localisation per model and method."}],
            "tables": [table.round(3)]}
