"""Key findings in words, from small hand-made results tables (no Study)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from xaicompare.clustering import family_permutation_test, smallest_attainable_p
from xaicompare.report import findings as fd


def frame(values, labels):
    return pd.DataFrame(values, index=labels, columns=labels)


def grouped_matrix(sizes, seed=0):
    """Dissimilarities of tight, far-apart groups: every family test at its floor."""
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(size=(s, 2)) * 0.01 + 10 * i
                             for i, s in enumerate(sizes)])
    labels = [f"m{i}" for i in range(len(points))]
    D = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    return frame(D, labels), {m: f"f{k}" for k, m in
                              zip(np.repeat(np.arange(len(sizes)), sizes), labels, strict=True)}


@pytest.mark.parametrize("sizes, permanova, permdisp", [
    ([3, 2], 1 / 10, 1 / 10),       # C(5, 2) groupings, no equal-sized families
    ([2, 2, 1], 2 / 30, 1 / 30),    # swapping the two pairs gives the same partition
    ([2, 2], 2 / 6, 1 / 6),
    ([3, 3, 1], 2 / 140, 1 / 140),  # the quickstart zoo: 7 models in 3 + 3 + 1
])
def test_smallest_attainable_p_is_hand_computed(sizes, permanova, permdisp):
    assert smallest_attainable_p(sizes, "permanova") == pytest.approx(permanova)
    assert smallest_attainable_p(sizes, "mantel") == pytest.approx(permanova)
    assert smallest_attainable_p(sizes, "permdisp") == pytest.approx(permdisp)
    assert smallest_attainable_p(sizes, "permanova", exact=False,
                                 n_permutations=999) == pytest.approx(1e-3)


@pytest.mark.parametrize("sizes", [[3, 2], [2, 2, 1], [3, 1, 1]])
def test_perfectly_grouped_models_reach_exactly_the_floor(sizes):
    D, families = grouped_matrix(sizes)
    for statistic in ("permanova", "mantel"):
        p = family_permutation_test(D, families, statistic=statistic)["p_value"]
        assert p == pytest.approx(smallest_attainable_p(sizes, statistic))


def family_tests_csv(permanova_p, permdisp_p=0.5, F=2.0, n_groupings=10, exact=True):
    csv = ("test,statistic,p_value,exact,n_permutations,dispersion\n"
           "cophenetic_correlation,0.9,,,,\n"
           f"permanova,{F},{permanova_p},{exact},{n_groupings},\n"
           f"permdisp,1.0,{permdisp_p},{exact},{n_groupings},\"{{\"\"a\"\": 0.1, \"\"b\"\": 0.3}}\"\n"
           f"mantel,0.2,{permanova_p},{exact},{n_groupings},\n"
           "ari_communities_vs_families,0.0,,,,\n"
           "ari_clusters_vs_families,1.0,,,,\n")
    return pd.read_csv(io.StringIO(csv), index_col=0)  # as the report reads the CSV


FIVE = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "b2": "b"}  # 3 + 2: floor 1/10


def test_a_p_at_the_floor_says_it_is_the_strongest_evidence_possible():
    reading = fd.family_tests_reading(family_tests_csv(0.1), FIVE)
    assert "smallest attainable 0.10" in reading
    assert "with this few models the test cannot reach 0.05" in reading
    text = fd.p_in_words(0.01, 0.01, "x")
    assert "the strongest evidence this test can give that x" in text
    assert "evidence that x" in fd.p_in_words(0.02, 0.001, "x")
    assert "no evidence that x" in fd.p_in_words(0.4, 0.001, "x")


def test_permanova_share_is_the_between_family_sum_of_squares():
    # hand-made: 4 points on a line, families {0, 1} and {10, 11}
    x = np.array([0.0, 1.0, 10.0, 11.0])
    D = frame(np.abs(x[:, None] - x[None]), list("abcd"))
    F = family_permutation_test(D, ["p", "p", "q", "q"])["statistic"]
    total = ((x - x.mean()) ** 2).sum()
    between = 2 * (0.5 - x.mean()) ** 2 + 2 * (10.5 - x.mean()) ** 2
    assert fd.permanova_share(F, 4, 2) == pytest.approx(between / total)
    reading = fd.family_tests_reading(family_tests_csv(0.79, F=0.5), FIVE)
    assert "family explains 14% of the spread" in reading  # 0.5 / (0.5 + 3)
    assert "p = 0.79 (smallest attainable 0.10)" in reading


def test_location_and_spread_both_significant_is_not_read_as_clusters():
    reading = fd.family_tests_reading(family_tests_csv(0.01, permdisp_p=0.01, n_groupings=924),
                                      {f"m{i}": "a" if i < 6 else "b" for i in range(12)})
    assert "does not show that the families form separate clusters" in reading
    assert "a 0.10, b 0.30" in reading


def test_family_structure_finding_across_methods():
    tests = {"gradcam": family_tests_csv(0.87), "ig": family_tests_csv(0.03, n_groupings=140)}
    seven = {f"c{i}": "cnn" for i in range(3)} | {f"t{i}": "vit" for i in range(3)} | \
        {"m": "mlp"}
    finding = fd.family_structure_finding(tests, {"gradcam": FIVE, "ig": seven}, "cosine",
                                          anchor="fig-x", names={"ig": "IG"})
    assert finding.anchor == "fig-x"
    assert "only for IG" in finding.text and "gradcam p = 0.87" in finding.text
    assert "smallest p attainable with these models and families is 0.014" in finding.text
    none = fd.family_structure_finding({"gradcam": family_tests_csv(0.5, n_groupings=140)},
                                       {"gradcam": seven}, "cosine")
    assert "does not explain how the models explain" in none.text
    tiny = {"a1": "a", "a2": "a", "b1": "b", "b2": "b"}  # 2 + 2: floor 1/3
    untestable = fd.family_structure_finding({"g": family_tests_csv(0.33, n_groupings=6)},
                                             {"g": tiny}, "cosine")
    assert "cannot be tested with this few models" in untestable.text
    assert "is 0.33, above 0.05, so no result could have been significant" in untestable.text


def test_pair_finding_names_the_extreme_pairs_with_intervals():
    boot = pd.DataFrame([
        ("a", "b", 0.9, 0.85, 0.95), ("a", "c", 0.5, 0.4, 0.6), ("b", "c", 0.6, 0.5, 0.7),
        ("b", "a", 0.9, 0.85, 0.95), ("a", "a", 1.0, 1.0, 1.0)],
        columns=["model_a", "model_b", "estimate", "low", "high"]).assign(statistic="mean")
    finding = fd.pair_finding(boot, None, "gradcam", "cosine")
    assert "Most alike (gradcam, cosine mean similarity): a and b (0.90, 95% CI 0.85 to " \
           "0.95)" in finding.text
    assert "least alike: a and c (0.50" in finding.text
    assert "do not overlap" in finding.text
    mean = frame([[1, 0.5, 0.6], [0.5, 1, 0.55], [0.6, 0.55, 1]], list("abc"))
    no_ci = fd.pair_finding(None, mean, "gradcam", "cosine")
    assert "a and c (0.60)" in no_ci.text and "CI" not in no_ci.text


def test_accuracy_finding_reads_error_consistency_and_undefined_pairs():
    metrics = pd.DataFrame({"accuracy": [0.9, 1.0, 0.8]}, index=list("abc"))
    kappa = frame([[1, np.nan, 0.4], [np.nan, np.nan, np.nan], [0.4, np.nan, 1]], list("abc"))
    finding = fd.accuracy_finding(metrics, kappa)
    assert "from 0.80 (c) to 1.00 (b)" in finding.text
    assert "mean error consistency kappa 0.40 over 1 model pairs" in finding.text
    assert "undefined for 2 pairs" in finding.text


def test_error_agreement_and_method_agreement_findings():
    agreement = pd.DataFrame([
        ("error consistency (1 - kappa)", "explanation g/cosine", 5, 0.8, 0.0083, 120, True),
        ("error consistency (1 - kappa)", "explanation k/cosine", 5, 0.1, 0.7, 120, True),
        ("explanation g/cosine", "explanation k/cosine", 5, 0.5, 0.2, 120, True)],
        columns=["matrix_a", "matrix_b", "n_models", "r", "p_value", "n_permutations",
                 "exact"])
    finding = fd.error_agreement_finding(agreement, ["g", "k"], "cosine")
    assert finding.text.startswith("Models that explain alike also err alike for g")
    assert "not detectably for k" in finding.text and "smallest attainable p 0.0083" \
        in finding.text
    assert "1 of 3 matrix pairs" in fd.matrix_agreement_reading(agreement)
    table = pd.DataFrame([("r1", "cnn", "g", "k", 0.8), ("v1", "vit", "g", "k", 0.4),
                          ("r1", "cnn", "g", "i", 0.2), ("v1", "vit", "g", "i", 0.2)],
                         columns=["model", "family", "method_a", "method_b", "mean"])
    methods = fd.method_agreement_finding(table, "cosine", names={"g": "Grad-CAM"})
    assert "agree most as Grad-CAM vs k" in methods.text and "least as Grad-CAM vs i" \
        in methods.text
    assert "0.50 in cnn, 0.30 in vit" in methods.text


def test_end_of_run_lines_show_headline_findings_and_the_absolute_report_path(tmp_path,
                                                                              monkeypatch):
    from types import SimpleNamespace

    from xaicompare.stages.report_findings import end_of_run_lines

    monkeypatch.chdir(tmp_path)
    findings = [fd.Finding(f"long {t}", topic=t, short=f"short {t}")
                for t in ("clusters", "methods", "errors", "accuracy", "pairs", "structure")]
    result = SimpleNamespace(findings=findings, report=tmp_path.joinpath("run", "report.html")
                             .relative_to(tmp_path), run_dir="run")
    lines = end_of_run_lines(result)
    assert lines == ["Key findings:", "  - short structure", "  - short pairs",
                     "  - short accuracy", "  - short errors",
                     f"Report: {tmp_path / 'run' / 'report.html'}"]
    bare = end_of_run_lines(SimpleNamespace(findings=[], report=None, run_dir="run"))
    assert bare == [f"Outputs: {tmp_path / 'run'}"]
