"""Key findings in words: pure functions of the results tables (no Study, no files).

Each finding is one sentence that says what a number means, not only what it is, and
links to the figure it comes from. Every p-value is read beside the smallest p its test
can reach with this many models: with 5 models in two families of 3 and 2 a permutation
test cannot go below 0.1, so "p = 0.1" there is the strongest evidence possible, and
"p > 0.05" is no evidence against anything.

Tables, as the stages write them:
  family tests  index test (permanova, permdisp, mantel, ari_*...), columns statistic,
                p_value, exact, n_permutations, dispersion (tables/cluster/<m>/<metric>_tests)
  assignments   index model, columns family, community, cluster (..._assignments)
  bootstrap     columns model_a, model_b, estimate, low, high, statistic (trust/<m>/...)
  model metrics index model, column accuracy (diversity/model_metrics)
  agreement     columns matrix_a, matrix_b, n_models, r, p_value, n_permutations, exact
                (joint/matrix_agreement: Mantel tests between matrices)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .readings import (  # noqa: F401  (the table readings, re-exported for the stages)
    ALPHA,
    explanation_error_reading,
    family_sizes,
    family_tests_reading,
    format_p,
    mantel_reading,
    matrix_agreement_reading,
    p_in_words,
    permanova_share,
    test_floor,
)

ERRORS = "error consistency"  # how stages/lenses.py names the error matrix


@dataclass(frozen=True)
class Finding:
    """One sentence of the key findings; `anchor`: the id of the figure it comes from."""

    text: str
    anchor: str | None = None
    topic: str = ""
    short: str = ""  # a terminal line (at most ~110 characters); "" = use text


def _method_label(method: str, names: Mapping[str, str] | None) -> str:
    return (names or {}).get(method, method)


def family_structure_finding(tests: Mapping[str, pd.DataFrame],
                             families: Mapping[str, Mapping[str, str]], metric: str,
                             anchor: str | None = None,
                             names: Mapping[str, str] | None = None) -> Finding | None:
    """Does architecture family explain the explanation structure, method by method?
    tests / families: per method, its family-tests table and the tested models' families."""
    rows = []
    for method, table in tests.items():
        if "permanova" not in table.index:
            continue
        row = table.loc["permanova"]
        sizes = family_sizes(families[method])
        rows.append((method, float(row["p_value"]), test_floor(row, "permanova", sizes),
                     permanova_share(float(row["statistic"]), sum(sizes), len(sizes))))
    if not rows:
        return None
    significant = [r for r in rows if np.isfinite(r[1]) and r[1] < ALPHA]
    floors = [r[2] for r in rows if np.isfinite(r[2])]
    listed = ", ".join(f"{_method_label(m, names)} p = {format_p(p)} ({share:.0%} of the "
                       "spread)" for m, p, _, share in rows)
    floor = format_p(min(floors)) if floors else "undefined"
    untestable = bool(floors) and min(floors) >= ALPHA
    if untestable:
        verdict = "cannot be tested with this few models"
    elif not significant:
        verdict = (f"does not explain how the models explain, for any of the "
                   f"{len(rows)} methods (PERMANOVA, {metric})")
    elif len(significant) == len(rows):
        verdict = f"separates the models' explanations for every method (PERMANOVA, {metric})"
    else:
        verdict = ("separates the models' explanations only for "
                   + ", ".join(_method_label(m, names) for m, *_ in significant)
                   + f" (PERMANOVA, {metric})")
    text = (f"Architecture family {verdict}: {listed}; the smallest p attainable with "
            f"these models and families is {floor}"
            + (f", above {ALPHA}, so no result could have been significant." if untestable
               else "."))
    head = ("family cannot be tested" if untestable else
            "family does not explain the structure" if not significant else
            f"family explains the structure for {len(significant)}/{len(rows)} methods")
    short = (f"Explanations: {head} (PERMANOVA p " + ", ".join(format_p(p) for _, p, _, _ in rows)
             + f"; smallest attainable {floor})")
    return Finding(text, anchor, "structure", short)


def cluster_finding(assignments: pd.DataFrame, tests: pd.DataFrame, method: str, metric: str,
                    anchor: str | None = None,
                    names: Mapping[str, str] | None = None) -> Finding | None:
    """How the dendrogram cut and the Louvain communities group the models, and whether
    that follows the families (adjusted Rand index: 1 = the families exactly, 0 = chance)."""
    if assignments is None or not len(assignments):
        return None
    label = f"{_method_label(method, names)} / {metric}"
    parts = []
    if "cluster" in assignments:
        groups = assignments.groupby("cluster").groups
        described = " | ".join(", ".join(map(str, members)) for members in
                               sorted(groups.values(), key=len))
        parts.append(f"cut into {len(groups)} clusters, the {label} dendrogram groups the "
                     f"models as [{described}]")
    n_communities = assignments["community"].nunique() if "community" in assignments else 0
    if n_communities:
        parts.append(f"Louvain finds {n_communities} "
                     f"communit{'y' if n_communities == 1 else 'ies'}")
    aris = [(name, float(tests.loc[key, "statistic"])) for name, key in
            (("clusters", "ari_clusters_vs_families"),
             ("communities", "ari_communities_vs_families")) if key in tests.index]
    if aris:
        best = max(value for _, value in aris)
        follow = ("follow the families closely" if best >= 0.8 else
                  "partly follow the families" if best >= 0.3 else
                  "do not follow the families")
        parts.append(f"these groupings {follow} (adjusted Rand index "
                     + ", ".join(f"{name} {value:.2f}" for name, value in aris)
                     + "; 1 = the families exactly, 0 = chance)")
    if not parts:
        return None
    text = "; ".join(parts)
    short = f"Clusters ({label}): " + (f"{follow} (best ARI {best:.2f})" if aris else parts[0])
    return Finding(text[0].upper() + text[1:] + ".", anchor, "clusters", short)


def pair_finding(bootstrap: pd.DataFrame | None, mean: pd.DataFrame | None, method: str,
                 metric: str, ci: float = 0.95, anchor: str | None = None,
                 names: Mapping[str, str] | None = None) -> Finding | None:
    """The most and the least alike model pair (mean per-image similarity), with their
    bootstrap intervals where the trust stage wrote them."""
    label = f"{_method_label(method, names)}, {metric}"
    if bootstrap is not None and len(bootstrap):
        pairs = bootstrap[(bootstrap["statistic"] == "mean")
                          & (bootstrap["model_a"].astype(str) < bootstrap["model_b"].astype(str))]
        pairs = pairs[np.isfinite(pairs["estimate"].astype(float))]
        table = pairs[["model_a", "model_b", "estimate", "low", "high"]].reset_index(drop=True)
    elif mean is not None:
        i, j = np.triu_indices(len(mean), k=1)
        values = mean.to_numpy(dtype=float)[i, j]
        table = pd.DataFrame({"model_a": mean.index[i], "model_b": mean.columns[j],
                              "estimate": values, "low": np.nan, "high": np.nan})
        table = table[np.isfinite(table["estimate"])].reset_index(drop=True)
    else:
        return None
    if len(table) < 2:
        return None
    top = table.loc[table["estimate"].idxmax()]
    bottom = table.loc[table["estimate"].idxmin()]

    def shown(row) -> str:
        text = f"{row['model_a']} and {row['model_b']} ({row['estimate']:.2f}"
        if np.isfinite(row["low"]) and np.isfinite(row["high"]):
            text += f", {ci:.0%} CI {row['low']:.2f} to {row['high']:.2f}"
        return text + ")"

    text = (f"Most alike ({label} mean similarity): {shown(top)}; least alike: "
            f"{shown(bottom)}")
    if np.isfinite(top["low"]) and np.isfinite(bottom["high"]):
        text += ("; the intervals do not overlap, so the images separate the two pairs clearly"
                 if bottom["high"] < top["low"] else
                 "; the intervals overlap, so these images do not separate the two pairs")
    short = (f"Most alike ({label}): {top['model_a']} & {top['model_b']} "
             f"{top['estimate']:.2f}; least: {bottom['model_a']} & {bottom['model_b']} "
             f"{bottom['estimate']:.2f}")
    return Finding(text + ".", anchor, "pairs", short)


def accuracy_finding(metrics: pd.DataFrame | None, errors: pd.DataFrame | None,
                     anchor: str | None = None) -> Finding | None:
    """Accuracy range, and how far the models share their mistakes (error consistency:
    Cohen's kappa of the right/wrong patterns, 0 = as often as their accuracies predict)."""
    if metrics is None or "accuracy" not in metrics:
        return None
    accuracy = metrics["accuracy"].astype(float).dropna()
    if not len(accuracy):
        return None
    low, high = accuracy.min(), accuracy.max()

    def who(value) -> str:
        return ", ".join(str(m) for m in accuracy.index[np.isclose(accuracy, value)])

    text = (f"Accuracy is {low:.2f} for every model" if np.isclose(low, high) else
            f"Accuracy ranges from {low:.2f} ({who(low)}) to {high:.2f} ({who(high)})")
    short = f"Accuracy {low:.2f} to {high:.2f}"
    if errors is not None and len(errors) >= 2:
        i, j = np.triu_indices(len(errors), k=1)
        values = errors.to_numpy(dtype=float)[i, j]
        defined = np.isfinite(values)
        if defined.any():
            kappa = values[defined].mean()
            best = int(np.flatnonzero(defined)[np.argmax(values[defined])])
            reading = ("more than their accuracies predict" if kappa >= 0.2 else
                       "a little more than chance" if kappa > 0.05 else
                       "no more than chance" if kappa >= -0.05 else "less than chance")
            short += f"; mean error consistency kappa {kappa:.2f} ({reading})"
            text += (f"; they share their mistakes {reading} (mean error consistency "
                     f"kappa {kappa:.2f} over {int(defined.sum())} model pairs, highest "
                     f"{errors.index[i[best]]} and {errors.columns[j[best]]} "
                     f"{values[best]:.2f})")
            if (~defined).any():
                n_undefined = int((~defined).sum())
                text += (f"; kappa is undefined for {n_undefined} "
                         f"pair{'s' if n_undefined > 1 else ''} (both models without error, "
                         "or no images in common)")
    return Finding(text + ".", anchor, "accuracy", short)


def error_agreement_finding(agreement: pd.DataFrame | None, methods: Sequence[str],
                            metric: str, anchor: str | None = None,
                            names: Mapping[str, str] | None = None) -> Finding | None:
    """Where explanation structure and error structure agree: the Mantel test of each
    method's explanation dissimilarity against 1 - error consistency."""
    if agreement is None or not len(agreement):
        return None
    found = []
    for method in methods:
        target = f"explanation {method}/{metric}"
        rows = agreement[((agreement["matrix_a"] == target)
                          & agreement["matrix_b"].str.startswith(ERRORS))
                         | ((agreement["matrix_b"] == target)
                            & agreement["matrix_a"].str.startswith(ERRORS))]
        if len(rows) and np.isfinite(float(rows.iloc[0]["r"])):
            found.append((method, rows.iloc[0]))
    if not found:
        return None
    agree = [(m, row) for m, row in found
             if float(row["p_value"]) < ALPHA and float(row["r"]) > 0]
    opposite = [(m, row) for m, row in found
                if float(row["p_value"]) < ALPHA and float(row["r"]) < 0]

    def shown(items) -> str:
        return ", ".join(f"{_method_label(m, names)} (r = {float(row['r']):.2f}, "
                         f"p = {format_p(float(row['p_value']))})" for m, row in items)

    floor = min(test_floor(row, "mantel", None) for _, row in found)
    n_models = int(max(float(row["n_models"]) for _, row in found))
    if agree and len(agree) == len(found):
        text = f"Models that explain alike also err alike, for every method: {shown(agree)}"
    elif agree:
        rest = [item for item in found if item not in agree]
        text = (f"Models that explain alike also err alike for {shown(agree)}, but not "
                f"detectably for {shown(rest)}")
    else:
        text = ("Explanation structure and error structure do not detectably agree for any "
                f"method: {shown(found)}")
    if opposite:  # two-sided test: a significant negative r is the reverse relation
        text += (f"; for {shown(opposite)} models that explain alike err differently "
                 "(a negative correlation)")
    text += (f" (Mantel tests over {n_models} models on the {metric} dissimilarity; "
             f"smallest attainable p {format_p(floor)})")
    short = ("Explain alike = err alike: " + (", ".join(_method_label(m, names) for m, _ in agree)
                                               if agree else "for no method")
             + f" (Mantel, {len(agree)}/{len(found)} methods p < {ALPHA})")
    return Finding(text + ".", anchor, "errors", short)


def method_agreement_finding(table: pd.DataFrame | None, metric: str,
                             anchor: str | None = None,
                             names: Mapping[str, str] | None = None) -> Finding | None:
    """Which explanation methods agree with each other (mean over models of the per-model
    method x method similarity), and whether that depends on the architecture family.
    `table`: long rows model, family, method_a, method_b, mean."""
    if table is None or not len(table):
        return None
    table = table[np.isfinite(table["mean"].astype(float))]
    if not len(table):
        return None
    pairs = table.groupby(["method_a", "method_b"])["mean"].agg(["mean", "count"])

    def pair(key) -> str:
        a, b = key
        return f"{_method_label(a, names)} vs {_method_label(b, names)}"

    top, bottom = pairs["mean"].idxmax(), pairs["mean"].idxmin()
    if len(pairs) == 1:
        text = (f"The two methods agree with mean per-image {metric} "
                f"{pairs.loc[top, 'mean']:.2f} ({pair(top)}, {int(pairs.loc[top, 'count'])} "
                "models)")
    else:
        text = (f"Methods agree most as {pair(top)} (mean per-image {metric} "
                f"{pairs.loc[top, 'mean']:.2f} over {int(pairs.loc[top, 'count'])} models) "
                f"and least as {pair(bottom)} ({pairs.loc[bottom, 'mean']:.2f})")
    short = f"Methods agree most: {pair(top)} {pairs.loc[top, 'mean']:.2f}"
    if "family" in table and table["family"].nunique() >= 2:
        by_family = table.groupby("family")["mean"].mean().sort_values(ascending=False)
        text += ("; averaged over method pairs, agreement is " + ", ".join(
            f"{value:.2f} in {family}" for family, value in by_family.items()) + " models")
        spread = by_family.iloc[0] - by_family.iloc[-1]
        text += (" (about the same in every family)" if spread < 0.05 else
                 f" (a spread of {spread:.2f} between families: a description of these "
                 "models, not a test)")
    return Finding(text + ".", anchor, "methods", short)
