"""Report sections across methods: do a model's methods agree with each other (method x
method per model, tables/method_agreement), and does architecture family explain the
explanation structure for every method (the cluster stage's family tests side by side)?"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import report as rp
from ..report import findings as fd
from ..report.style import family_sort_key
from .contexts import ReportContext
from .method_agreement import read_method_agreement
from .report_common import FigureWriter, method_labels


def method_agreement_section(ctx: ReportContext, save: FigureWriter) -> dict | None:
    """Small multiples (one method x method heatmap per model), the same numbers as a table
    (method pairs x models) and their mean per family."""
    found = read_method_agreement(ctx.results, ctx.compare, ctx.methods)
    if found is None:
        return None
    metric, table = found
    labels = method_labels(ctx)
    path = save(rp.plot_method_agreement(table, ctx.families, metric=metric, labels=labels),
                "methods", "method_agreement")
    models = sorted(dict.fromkeys(table["model"]),
                    key=lambda m: family_sort_key(ctx.families.get(m, "")))
    named = table.assign(pair=[f"{labels.get(a, a)} vs {labels.get(b, b)}"
                               for a, b in zip(table["method_a"], table["method_b"],
                                               strict=True)])
    wide = named.pivot(index="pair", columns="model", values="mean")[models]
    wide.columns = [f"{m} ({ctx.families.get(m, '?')})" for m in models]
    by_family = named.pivot_table(index="pair", columns="family", values="mean",
                                  aggfunc="mean")
    finding = fd.method_agreement_finding(table, metric, names=labels)
    return {"title": "Method × method agreement per model",
            "text": "Do a model's explanation methods agree with each other on the same "
                    f"images? Mean per-image {metric} similarity ({_metric_range(metric)}) "
                    "between two methods' maps of one model, with the study's normalisation "
                    "and resolution (tables/method_agreement). Beside the model × model view "
                    "per method, this asks whether a conclusion depends on the method family "
                    "and whether that differs between architectures.",
            "figures": [{"path": path, "caption": "One panel per model (grouped by family): "
                         "every pair of methods; diagonal left blank."}],
            "tables": [{"table": wide.round(3), "reading": finding.text if finding else None,
                        "caption": f"Mean per-image {metric} between methods, per model"},
                       {"table": by_family.round(3),
                        "caption": "The same, averaged over the models of each family"}]}


def _metric_range(metric: str) -> str:
    from ..compare import METRICS

    spec = METRICS.get(metric)
    return spec.properties.describe() if spec.properties else "higher = more alike"


def family_test_rows(ctx: ReportContext) -> pd.DataFrame:
    """One row per method and metric: PERMANOVA's p for 'family explains the structure',
    the smallest p attainable with the tested models' families, and the family's share."""
    rows = []
    for method in ctx.methods:
        for metric in ctx.compare.metrics:
            tests = ctx.results.family_tests(method, metric, missing_ok=True)
            assignments = ctx.results.assignments(method, metric, missing_ok=True)
            if tests is None or assignments is None or "permanova" not in tests.index:
                continue
            row = tests.loc["permanova"]
            sizes = fd.family_sizes(assignments["family"])
            rows.append({"method": method, "metric": metric,
                         "share_of_spread": fd.permanova_share(float(row["statistic"]),
                                                               sum(sizes), len(sizes)),
                         "p_value": float(row["p_value"]),
                         "floor": fd.test_floor(row, "permanova", sizes),
                         "n_groupings": row.get("n_permutations"),
                         "exact": row.get("exact")})
    return pd.DataFrame(rows)


def family_summary_section(ctx: ReportContext, save: FigureWriter) -> dict | None:
    """For each method, the family test's p beside the smallest attainable p: does the
    published study's conclusion (no clustering by architecture) hold across methods?"""
    rows = family_test_rows(ctx)
    if not len(rows):
        return None
    primary = ctx.compare.metrics[0]
    labels = method_labels(ctx)
    shown = rows[rows["metric"] == primary].assign(
        method=lambda f: f["method"].map(lambda m: labels.get(m, m))).set_index("method")
    figures = []
    if len(shown):
        figures.append({"path": save(rp.plot_family_test_summary(
            shown, title=f"Does family explain the structure? ({primary})"),
            "methods", "family_tests"),
            "caption": "PERMANOVA p-value of the family grouping per method (dot) and the "
                       "smallest p the test can give with these models and families (bar). "
                       "Left of the dashed line: p < 0.05."})
    tests, assignments = {}, {}
    for method in ctx.methods:
        table = ctx.results.family_tests(method, primary, missing_ok=True)
        groups = ctx.results.assignments(method, primary, missing_ok=True)
        if table is not None and groups is not None:
            tests[method], assignments[method] = table, groups["family"].to_dict()
    finding = fd.family_structure_finding(tests, assignments, primary, names=labels)
    table = rows.assign(share_of_spread=rows["share_of_spread"].round(3),
                        p_value=rows["p_value"].map(fd.format_p),
                        floor=rows["floor"].map(lambda p: f"{p:.3g}" if np.isfinite(p)
                                                else "—"))
    return {"title": "Does architecture family explain the structure, method by method?",
            "text": "The published study found that explanations do not cluster by "
                    "architecture. This asks it once per method (PERMANOVA on each method's "
                    "dissimilarity matrix, exact over every grouping of the models when "
                    "there are few), next to the smallest p-value the test could reach at "
                    "all: with few models a large p is no evidence either way.",
            "figures": figures,
            "tables": [{"table": table.rename(columns={"floor": "smallest attainable p",
                                                       "share_of_spread": "family's share"}),
                        "caption": "PERMANOVA per method and metric",
                        "reading": finding.text if finding else None}]}
