"""Statistical tables in words: one line per table, each p-value read beside the smallest
p its test can reach with this many models (report/findings.py builds on these).

With 5 models in two families of 3 and 2 a permutation test cannot go below 0.1, so
"p = 0.1" there is the strongest evidence possible, and "p > 0.05" is no evidence either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..clustering.stats import smallest_attainable_p

ALPHA = 0.05


def format_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "undefined"
    return "< 0.001" if p < 0.001 else f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def is_true(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0")


def family_sizes(families: Mapping[str, str] | pd.Series) -> list[int]:
    """Models per family, e.g. {a: cnn, b: cnn, c: vit} -> [2, 1]."""
    return sorted(pd.Series(dict(families)).value_counts().tolist(), reverse=True)


def test_floor(row: Mapping, statistic: str, sizes: Sequence[int] | None) -> float:
    """Smallest p this test could have returned (cluster.stats.smallest_attainable_p for
    family tests; 1 / n permutations for a Mantel test between matrices)."""
    n = float(row.get("n_permutations", np.nan))
    exact = is_true(row.get("exact"))
    if sizes is not None:
        if not exact and not np.isfinite(n):
            return float("nan")
        return smallest_attainable_p(sizes, statistic, exact, None if exact else int(n))
    if not np.isfinite(n) or n < 1:
        return float("nan")
    return 1.0 / n if exact else 1.0 / (1.0 + n)


def p_in_words(p: float, floor: float, claim: str) -> str:
    """'p = 0.79 (smallest attainable 0.014): no evidence that <claim>', or the like."""
    if p is None or not np.isfinite(p):
        return f"p undefined: the test cannot say whether {claim}"
    head = f"p = {format_p(p)}"
    if np.isfinite(floor):
        head += f" (smallest attainable {format_p(floor)})"
    if p < ALPHA:
        at_floor = np.isfinite(floor) and p <= floor * (1 + 1e-9)
        strength = "the strongest evidence this test can give" if at_floor else "evidence"
        return f"{head}: {strength} that {claim}"
    if np.isfinite(floor) and floor >= ALPHA:
        return (f"{head}: with this few models the test cannot reach {ALPHA}, so it cannot "
                f"show that {claim}")
    return f"{head}: no evidence that {claim}"


def permanova_share(F: float, n_models: int, n_families: int) -> float:
    """Share of the total sum of squared dissimilarities between the families (R^2), from
    PERMANOVA's pseudo-F = (SS_between / (a - 1)) / (SS_within / (n - a))."""
    if not np.isfinite(F) or n_families < 2 or n_models <= n_families:
        return float("nan")
    between = F * (n_families - 1)
    return between / (between + n_models - n_families)


def family_tests_reading(tests: pd.DataFrame, families: Mapping[str, str]) -> str:
    """One line for a family-tests table: PERMANOVA (with the share of spread the family
    explains), PERMDISP and the Mantel test against the family indicator, each p beside the
    smallest attainable one. `families`: the family of each model that was tested."""
    sizes = family_sizes(families)
    n, a = sum(sizes), len(sizes)
    parts = []
    if "permanova" in tests.index:
        row = tests.loc["permanova"]
        share = permanova_share(float(row["statistic"]), n, a)
        what = (f"family explains {share:.0%} of the spread" if np.isfinite(share)
                else "family's share of the spread is undefined")
        parts.append(f"PERMANOVA: {what}, " + p_in_words(
            float(row["p_value"]), test_floor(row, "permanova", sizes),
            "models of a family explain alike"))
    if "permdisp" in tests.index:
        row = tests.loc["permdisp"]
        spread = ""
        dispersion = row.get("dispersion")
        if isinstance(dispersion, str) and dispersion.startswith("{"):
            spread = " (distance to the family centre: " + ", ".join(
                f"{k} {v:.2f}" for k, v in json.loads(dispersion).items()) + ")"
        parts.append("PERMDISP: " + p_in_words(
            float(row["p_value"]), test_floor(row, "permdisp", sizes),
            "the families differ in how spread out they are") + spread)
    if "mantel" in tests.index:
        row = tests.loc["mantel"]
        parts.append(f"Mantel vs family: r = {float(row['statistic']):.2f}, " + p_in_words(
            float(row["p_value"]), test_floor(row, "mantel", sizes),
            "models of different families are less alike"))
    if not parts:
        return "No family test was possible here."
    if all(name in tests.index and float(tests.loc[name, "p_value"]) < ALPHA
           for name in ("permanova", "permdisp")):
        parts.append("PERMANOVA reacts to spread as well as to location, so with PERMDISP "
                     "significant it does not show that the families form separate clusters")
    return "; ".join(parts) + "."


def mantel_reading(row: Mapping) -> str:
    """One line for one Mantel test between two model x model matrices."""
    r, p = float(row.get("r", np.nan)), float(row.get("p_value", np.nan))
    a, b = row["matrix_a"], row["matrix_b"]
    if not np.isfinite(r):
        note = row.get("note")
        return f"{a} vs {b}: undefined ({note if isinstance(note, str) else 'too few models'})."
    strength = "strong" if abs(r) >= 0.5 else "weak" if abs(r) < 0.3 else "moderate"
    return (f"{a} vs {b}: {strength} correlation r = {r:.2f} over {int(row['n_models'])} "
            f"models, " + p_in_words(p, test_floor(row, "mantel", None),
                                     "the two matrices order the model pairs alike") + ".")


def matrix_agreement_reading(table: pd.DataFrame, show: int = 3) -> str:
    """One line for a table of Mantel tests between matrices: how many pairs correlate
    detectably, the strongest of them, and the smallest attainable p."""
    rows = table[np.isfinite(table["r"].astype(float))]
    if not len(rows):
        return "No Mantel test was possible (too few models with defined matrices)."
    hits = rows[rows["p_value"].astype(float) < ALPHA]
    hits = hits.reindex(hits["r"].abs().sort_values(ascending=False).index)
    floors = [test_floor(row, "mantel", None) for _, row in rows.iterrows()]
    floors = [f for f in floors if np.isfinite(f)]
    text = f"{len(hits)} of {len(rows)} matrix pairs correlate detectably (p < {ALPHA})"
    if len(hits):
        text += ", most strongly " + "; ".join(
            f"{row['matrix_a']} with {row['matrix_b']} (r = {float(row['r']):.2f}, "
            f"p = {format_p(float(row['p_value']))})" for _, row in hits.head(show).iterrows())
    if floors:
        text += (f"; the smallest attainable p is {format_p(min(floors))} to "
                 f"{format_p(max(floors))} (it depends on the number of models each test has)"
                 if not np.isclose(min(floors), max(floors)) else
                 f"; the smallest attainable p is {format_p(min(floors))}")
    return text + "."


def explanation_error_reading(table: pd.DataFrame) -> str:
    """One line for the one-sided Mantel tests of explanation dissimilarity against error
    consistency (a negative r: models with similar explanations make the same mistakes)."""
    rows = table[np.isfinite(table["r"].astype(float))]
    if not len(rows):
        return "No Mantel test was possible (too few models with defined matrices)."
    hits = rows[rows["p_value"].astype(float) < ALPHA]
    floor = min(test_floor(row, "mantel", None) for _, row in rows.iterrows())
    claim = "models with similar explanations make the same mistakes"
    if len(hits):
        text = (f"Evidence that {claim} for " + ", ".join(
            f"{row['method']}/{row['metric']} (r = {float(row['r']):.2f}, "
            f"p = {format_p(float(row['p_value']))})" for _, row in hits.iterrows())
            + f"; not for the other {len(rows) - len(hits)} of {len(rows)}")
    else:
        text = (f"No evidence that {claim}, for any of the {len(rows)} method/metric pairs "
                f"(p from {format_p(rows['p_value'].min())} to "
                f"{format_p(rows['p_value'].max())})")
    return text + f"; the smallest attainable p is {format_p(floor)}."
