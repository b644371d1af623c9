"""The cluster stage as a function of its context: a dissimilarity table in a tmp Results,
trees and tables out, checked against scipy's linkage and hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import cophenet, fcluster, linkage
from scipy.spatial.distance import squareform
from stage_fixtures import MODELS, cluster_context

from xaicompare.errors import UserError
from xaicompare.stages import cluster as cluster_stage
from xaicompare.stages.results import Results

# Two tight pairs, far apart: the CNNs together, the ViTs together.
D = pd.DataFrame([[0.0, 0.10, 0.70, 0.80],
                  [0.10, 0.0, 0.75, 0.85],
                  [0.70, 0.75, 0.0, 0.20],
                  [0.80, 0.85, 0.20, 0.0]], index=list(MODELS), columns=list(MODELS))


def write_matrices(results: Results, dissimilarity: pd.DataFrame) -> None:
    results.write_similarity("gradcam", "cosine", "dissimilarity", dissimilarity,
                             {"method": "gradcam"})
    results.write_similarity("gradcam", "cosine", "mean", 1.0 - dissimilarity,
                             {"method": "gradcam"})
    results.writes.clear()  # from here on: what the stage writes


def test_cluster_stage_tree_equals_scipy_and_cut_finds_the_two_pairs(tmp_path):
    ctx = cluster_context(tmp_path, method="average", k=2, permutations=99)
    write_matrices(ctx.results, D)
    out = cluster_stage.run_cluster(ctx)
    reads, writes = set(ctx.results.reads), set(ctx.results.writes)  # the stage's own
    assert reads <= set(cluster_stage.READS) and writes == set(cluster_stage.WRITES)
    reference = linkage(squareform(D.to_numpy()), method="average")
    tree = ctx.results.tree("gradcam", "cosine")
    np.testing.assert_allclose(tree.linkage, reference)
    assert tree.labels == list(MODELS)
    np.testing.assert_allclose(out[("gradcam", "cosine")]["tree"].linkage, reference)
    assignments = ctx.results.assignments("gradcam", "cosine")
    cut = fcluster(reference, 2, criterion="maxclust")
    same = {(a, b): cut[i] == cut[j] for i, a in enumerate(MODELS)
            for j, b in enumerate(MODELS)}
    clusters = assignments["cluster"].to_dict()
    assert all((clusters[a] == clusters[b]) == same[(a, b)] for a, b in same)
    assert clusters["cnn_a"] == clusters["cnn_b"] != clusters["vit_a"] == clusters["vit_b"]
    assert assignments["family"].to_dict() == ctx.families
    tests = ctx.results.family_tests("gradcam", "cosine")
    expected_cophenetic = cophenet(reference, squareform(D.to_numpy()))[0]
    assert tests.loc["cophenetic_correlation", "statistic"] == pytest.approx(
        expected_cophenetic)
    # families match the two clusters exactly: adjusted Rand index 1
    assert tests.loc["ari_clusters_vs_families", "statistic"] == pytest.approx(1.0)
    provenance = tests.attrs["provenance"]
    assert provenance["linkage"] == "average" and provenance["models"] == list(MODELS)
    mds = ctx.results.mds("gradcam", "cosine")
    assert list(mds.index) == list(MODELS)


def test_a_model_with_undefined_dissimilarities_is_left_out(tmp_path):
    ctx = cluster_context(tmp_path, method="complete")
    broken = D.copy()
    broken.loc["vit_b", ["cnn_a", "cnn_b"]] = np.nan
    broken.loc[["cnn_a", "cnn_b"], "vit_b"] = np.nan
    write_matrices(ctx.results, broken)
    cluster_stage.run_cluster(ctx)
    kept = ["cnn_a", "cnn_b", "vit_a"]
    tree = ctx.results.tree("gradcam", "cosine")
    assert tree.labels == kept
    np.testing.assert_allclose(
        tree.linkage, linkage(squareform(D.loc[kept, kept].to_numpy()), method="complete"))


def test_similarity_weights_read_the_mean_table(tmp_path):
    ctx = cluster_context(tmp_path, louvain_weight="similarity")
    write_matrices(ctx.results, D)
    cluster_stage.run_cluster(ctx)
    assert ctx.results.reads == {"similarity"}
    parts = ctx.results.assignments("gradcam", "cosine")["community"].to_dict()
    assert parts["cnn_a"] == parts["cnn_b"] and parts["vit_a"] == parts["vit_b"]


def test_without_the_compare_stage_the_message_says_run_it(tmp_path):
    with pytest.raises(UserError, match="run `xaicompare compare STUDY.yaml` first"):
        cluster_stage.run_cluster(cluster_context(tmp_path))
