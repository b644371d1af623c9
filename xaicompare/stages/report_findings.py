"""The report's key findings, gathered from the run's tables (report/findings.py words
them), and the lines a finished run prints in the terminal."""

from __future__ import annotations

from pathlib import Path

from ..report import findings as fd
from .contexts import ReportContext
from .method_agreement import read_method_agreement
from .report_common import anchor_of, method_labels

MAX_TERMINAL_FINDINGS = 4
# The terminal shows the headline topics first (the report shows every finding).
TERMINAL_ORDER = ("structure", "pairs", "accuracy", "errors", "methods", "clusters")


def findings_section(ctx: ReportContext) -> list[fd.Finding]:
    """Key findings, most important first, each linked to the figure it comes from (the
    report stage calls this after drawing the figures, so the links resolve)."""
    methods = list(ctx.methods)
    if not methods:
        return []
    metric, first = ctx.compare.metrics[0], methods[0]
    labels, results = method_labels(ctx), ctx.results
    tests, families = {}, {}
    for method in methods:
        table = results.family_tests(method, metric, missing_ok=True)
        groups = results.assignments(method, metric, missing_ok=True)
        if table is not None and groups is not None:
            tests[method], families[method] = table, groups["family"].to_dict()
    found = [fd.family_structure_finding(tests, families, metric,
                                         anchor_of(ctx, "methods", "family_tests"),
                                         names=labels)]
    if first in tests:
        assignments = results.assignments(first, metric, missing_ok=True)
        found.append(fd.cluster_finding(assignments, tests[first], first, metric,
                                        anchor_of(ctx, first, f"dendrogram_{metric}"),
                                        names=labels))
    bootstrap = results.trust_bootstrap(first, metric, missing_ok=True)
    mean = results.similarity(first, metric, "mean", missing_ok=True)
    found.append(fd.pair_finding(bootstrap, mean, first, metric, ctx.trust.ci,
                                 anchor_of(ctx, "trust", f"{first}_intervals")
                                 or anchor_of(ctx, first, f"dissimilarity_{metric}"),
                                 names=labels))
    found.append(fd.accuracy_finding(
        results.diversity("model_metrics", missing_ok=True),
        results.diversity("error_consistency", missing_ok=True),
        anchor_of(ctx, "diversity", "error_consistency")))
    found.append(fd.error_agreement_finding(
        results.matrix_agreement(missing_ok=True), methods, metric,
        anchor_of(ctx, "lenses", "matrix_trio"), names=labels))
    agreement = read_method_agreement(results, ctx.compare, methods)
    if agreement is not None:
        found.append(fd.method_agreement_finding(
            agreement[1], agreement[0], anchor_of(ctx, "methods", "method_agreement"),
            names=labels))
    return [f for f in found if f is not None]


def end_of_run_lines(result, limit: int = MAX_TERMINAL_FINDINGS) -> list[str]:
    """What a finished run prints last: a few findings (short form) and the absolute path
    of the report (or of the run folder when no report was written)."""
    findings = sorted(getattr(result, "findings", None) or [],
                      key=lambda f: TERMINAL_ORDER.index(f.topic)
                      if f.topic in TERMINAL_ORDER else len(TERMINAL_ORDER))[:limit]
    lines = []
    if findings:
        lines.append("Key findings:")
        lines += [f"  - {f.short or f.text}" for f in findings]
    if getattr(result, "report", None) is not None:
        lines.append(f"Report: {Path(result.report).resolve()}")
    else:
        lines.append(f"Outputs: {Path(result.run_dir).resolve()}")
    return lines
