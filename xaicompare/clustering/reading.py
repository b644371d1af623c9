"""The family tests in words: which of location (PERMANOVA) and spread (PERMDISP) fired."""

from __future__ import annotations

import math


def _p(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else f"{p:.3g}"


def read_family_tests(
    permanova_p: float,
    permdisp_p: float,
    dispersion: dict[str, float] | None = None,
    n_groupings: int | None = None,
    alpha: float = 0.05,
) -> str:
    """One or two sentences a reader cannot misread as "the families form clusters" when
    only their spread differs. dispersion: {family: mean distance to its centroid};
    n_groupings: number of groupings of an exact test (no p below 1/n; PERMANOVA's floor is
    higher where families of equal size swap: stats.smallest_attainable_p)."""
    if permanova_p is None or permdisp_p is None or math.isnan(permanova_p) \
            or math.isnan(permdisp_p):
        return (f"PERMANOVA p={_p(permanova_p)}, PERMDISP p={_p(permdisp_p)}: a test is "
                "undefined here (e.g. no spread within any family), so location and spread "
                "cannot be told apart.")
    location, spread = permanova_p < alpha, permdisp_p < alpha
    head = f"PERMANOVA p={_p(permanova_p)}"
    head += " but " if location and spread else " and "
    head += f"PERMDISP p={_p(permdisp_p)}"
    spreads = ""
    if dispersion:
        spreads = " (mean distance to the family centroid: " + ", ".join(
            f"{family} {value:.3g}" for family, value in dispersion.items()) + ")"
    if location and spread:
        text = (f"{head}: the families differ in spread{spreads}, not necessarily in "
                "location; PERMANOVA reacts to both, so it does not show that they form "
                "separate clusters.")
    elif location:
        text = (f"{head}: the families differ in location (where their models lie), with "
                f"no detected difference in spread{spreads}.")
    elif spread:
        text = (f"{head}: no difference in location detected, but the families differ in "
                f"spread{spreads}.")
    else:
        text = f"{head}: no difference between the families detected, in location or spread."
    if n_groupings:
        text += (f" Exact p-values over all {n_groupings} groupings of the models "
                 f"(no p below {1 / n_groupings:.3g} is possible, and PERMANOVA's floor is "
                 "higher when families of equal size can be swapped).")
    return text
