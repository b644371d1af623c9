"""Stratified agreement against a direct split of the per-image similarities."""

from __future__ import annotations

import numpy as np
import pytest

from xaicompare.diversity.joint import similarity_by_outcome
from xaicompare.diversity.stratified import stratified_agreement
from xaicompare.errors import UserError


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    m, n = 3, 60
    correct = rng.random((m, n)) < 0.7
    labels = rng.integers(0, 4, n)
    sim = rng.random((m, m, n))
    sim = (sim + sim.transpose(1, 0, 2)) / 2
    both = correct[0] & correct[1]
    sim[0, 1, both] += 1.0  # models 0 and 1 agree more when both are right
    sim[0, 1, 5] = np.nan  # one incomparable image
    return sim, correct, labels


def test_strata_means_and_counts_equal_direct_split(case):
    sim, correct, labels = case
    table = stratified_agreement(sim, correct, labels, ["a", "b", "c"], min_count=3,
                                 n_resamples=300, class_names=["w", "x", "y", "z"])
    row = table.set_index(["model_a", "model_b", "split", "stratum"])
    right = correct[0].astype(int) + correct[1]
    for k, name in ((2, "both_correct"), (1, "one_correct"), (0, "both_wrong")):
        v = sim[0, 1][(right == k) & np.isfinite(sim[0, 1])]
        got = row.loc[("a", "b", "outcome", name)]
        assert got["n"] == len(v) and got["mean"] == pytest.approx(v.mean())
        if got["enough"]:
            assert got["low"] <= got["mean"] <= got["high"]
    for k, name in enumerate("wxyz"):
        v = sim[1, 2][labels == k]
        assert row.loc[("b", "c", "class", name)]["mean"] == pytest.approx(v.mean())
    both = row.loc[("a", "b", "outcome", "both_correct")]
    one = row.loc[("a", "b", "outcome", "one_correct")]
    assert both["low"] > one["high"]  # the built-in effect is found, with separated intervals
    # the same means as the older unflagged summary
    old = similarity_by_outcome(sim, correct, ["a", "b", "c"]).set_index(
        ["model_a", "model_b", "outcome"])
    assert old.loc[("a", "b", "both_correct"), "mean"] == pytest.approx(both["mean"])


def test_small_strata_are_flagged_not_summarised(case):
    sim, correct, _ = case
    correct = correct.copy()
    correct[:, :58] = True  # only 2 images can be wrong
    table = stratified_agreement(sim, correct, min_count=5, n_resamples=50)
    wrong = table[(table["stratum"] == "both_wrong")]
    assert (~wrong["enough"]).all() and wrong["low"].isna().all()
    with pytest.raises(UserError, match="min_count"):
        stratified_agreement(sim, correct, min_count=0)
