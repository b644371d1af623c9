"""Report sections of the explanation similarity: per method, heatmaps per metric, the
structure plots (dendrogram, communities, MDS) and the family tests with their reading."""

from __future__ import annotations

import json

import pandas as pd

from .. import report as rp
from ..clustering import read_family_tests
from ..report import findings as fd
from .contexts import ReportContext
from .report_common import FigureWriter
from .results import PerImage


def metric_note(metric: str) -> str:
    """What a reader needs to read a metric's numbers, from the metric's own declaration."""
    from ..compare import METRICS

    spec = METRICS.get(metric)
    note = spec.properties.describe() if spec.properties else ""
    if not (spec.properties and spec.properties.sign_aware):
        note += ", ignores sign"
    if spec.normalization:
        note += f", on the maps as they are (normalisation '{spec.normalization}')"
    return note


def similarity_sections(ctx: ReportContext, save: FigureWriter) -> list[dict]:
    """Per method: a heatmap, tests and mean table per metric; structure plots for the first."""
    sections = []
    primary, results = ctx.compare.metrics[0], ctx.results
    for method in ctx.methods:
        figures, tables, tests = [], [], []
        for metric in ctx.compare.metrics:
            D = results.dissimilarity(method, metric)
            tree = results.tree(method, metric, missing_ok=True)
            order = None if tree is None else tree.order
            if order is not None:
                D = D.loc[order, order]  # models with undefined entries were left out
            if metric == primary:
                figures += structure_figures(ctx, save, method, metric, D, tree)
            figures.append({"path": save(rp.plot_dissimilarity_heatmap(
                D, ctx.families, order=order, title=f"{method} / {metric}"), method,
                f"dissimilarity_{metric}"),
                "caption": f"Dissimilarity sqrt((1 - mean)^2 + std^2) of per-image {metric} "
                           f"similarity ({metric_note(metric)}), ordered by the dendrogram."})
            family_tests = results.family_tests(method, metric, missing_ok=True)
            assignments = results.assignments(method, metric, missing_ok=True)
            if family_tests is not None and assignments is not None:
                tests.append({"caption": f"Family tests, {method} / {metric}",
                              "reading": fd.family_tests_reading(
                                  family_tests, assignments["family"].to_dict()),
                              "tests": [{"name": name, "statistic": row["statistic"],
                                         "p_value": row["p_value"]}
                                        for name, row in family_tests.iterrows()]})
            mean = results.similarity(method, metric, "mean")
            tables.append({"table": mean.round(3),
                           "caption": f"Mean per-image {metric} similarity "
                                      f"({metric_note(metric)})"})
        per_image = results.per_image(method, primary)
        figures.append({"path": save(_histograms(per_image), method, "similarity_histograms"),
                        "caption": f"Per-image {primary} similarity for every model pair."})
        sections.append({"title": f"Explanation similarity: {method}",
                         "text": f"Parameters: {json.dumps(ctx.methods[method])}. "
                                 f"Maps normalised with '{ctx.compare.normalization}' "
                                 f"at '{ctx.compare.resolution}' resolution before "
                                 "comparison.",
                         "figures": figures, "tables": tables, "tests": tests})
    return sections


def family_tests_in_words(tests: pd.DataFrame) -> str | None:
    """The PERMANOVA / PERMDISP pair of a tests table in words (None if either is missing)."""
    if not {"permanova", "permdisp"} <= set(tests.index):
        return None
    permdisp = tests.loc["permdisp"]
    dispersion = permdisp.get("dispersion")
    dispersion = json.loads(dispersion) if isinstance(dispersion, str) else None
    exact = all(str(tests.loc[t].get("exact")) == "True" for t in ("permanova", "permdisp"))
    n_groupings = int(permdisp["n_permutations"]) if exact else None
    return read_family_tests(float(tests.loc["permanova", "p_value"]),
                             float(permdisp["p_value"]), dispersion, n_groupings)


def structure_figures(ctx: ReportContext, save: FigureWriter, method: str, metric: str, D,
                      tree) -> list[dict]:
    """Dendrogram, Louvain community graph and MDS embedding of one dissimilarity matrix."""
    figures = []
    if tree is not None:
        figures.append({"path": save(rp.plot_dendrogram(
            tree.linkage, tree.labels, ctx.families,
            title=f"{method} / {metric}"), method, f"dendrogram_{metric}"),
            "caption": f"Dendrogram ({ctx.cluster.method} linkage) of the {metric} "
                       f"dissimilarity of {method} maps."})
    assignments = ctx.results.assignments(method, metric, missing_ok=True)
    if assignments is not None and len(D) >= 2:
        figures.append({"path": save(rp.plot_community_graph(
            D.clip(upper=1.0).rsub(1.0), assignments["community"].to_dict(), ctx.families,
            seed=ctx.seed, title=f"Louvain communities, {method} / {metric}"), method,
            f"communities_{metric}"), "caption": "Edge width: 1 - dissimilarity."})
    coords = ctx.results.mds(method, metric, missing_ok=True)
    if coords is not None:
        figures.append({"path": save(rp.plot_embedding(
            coords, ctx.families, title=f"MDS, {method} / {metric}"), method, f"mds_{metric}"),
            "caption": "Classical MDS of the dissimilarity matrix."})
    return figures


def _histograms(per_image: PerImage):
    names, values = per_image.names, per_image.values
    pairs = {(names[i], names[j]): values[i, j]
             for i in range(len(names)) for j in range(i + 1, len(names))}
    return rp.plot_similarity_histograms(pairs)
