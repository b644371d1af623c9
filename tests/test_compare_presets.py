"""Convention presets against direct implementations of the published formulas, and
batch-independence: the numbers of an image never depend on which other images are compared."""


import networkx as nx
import numpy as np
import pandas as pd
import pytest

import xaicompare as xc
from xaicompare.compare import METRICS, similarity, similarity_matrices, similarity_matrix
from xaicompare.compare.presets import THESIS_SIGMA
from xaicompare.errors import UserError
from xaicompare.stages.cluster import louvain_settings
from xaicompare.stages.compare import metric_options, study_ddof
from xaicompare.study_config import parse_config


@pytest.fixture
def maps():
    rng = np.random.default_rng(0)
    base = rng.random((1, 10, 12, 12))
    return base + 0.6 * rng.random((5, 10, 12, 12))  # 5 models, 10 images, related maps


def minmax(x):
    return (x - x.min()) / (x.max() - x.min())


def thesis_rbf(x, y, sigma):
    """The published kernel: exp(-||x - y||^2 / (2 sigma^2)) on the min-max maps."""
    return np.exp(-np.sum((minmax(x) - minmax(y)) ** 2) / (2 * sigma**2))


def test_thesis_rbf_is_the_published_kernel(maps):
    thesis = xc.conventions("thesis")  # what the preset sets, inspectable
    assert (thesis.ddof, thesis.louvain_backend, thesis.louvain_seed) == (1, "networkx", 42)
    a, b = maps[0], maps[3]
    for sigma, given in ((THESIS_SIGMA, {}), (10.0, {"sigma": 10.0}), (3.0, {"sigma": 3.0})):
        expected = [thesis_rbf(x, y, sigma) for x, y in zip(a, b, strict=True)]
        values, details = similarity(a, b, "rbf", preset="thesis", return_details=True, **given)
        np.testing.assert_allclose(values, expected, rtol=1e-10)
        assert details.params["sigma"] == sigma and details.params["distance"] == "euclidean"
        assert details.options["normalization"] == "minmax"
    # the same through the matrix: every pair, recorded in the provenance
    result = similarity_matrix(maps, "rbf", preset="thesis", sigma=3.0)
    expected = [thesis_rbf(x, y, 3.0) for x, y in zip(maps[1], maps[4], strict=True)]
    np.testing.assert_allclose(result.per_image[1, 4], expected, rtol=1e-10)
    provenance = result.provenance()
    assert provenance["preset"] == "thesis" and provenance["metric.sigma"] == 3.0
    assert provenance["metric.sigma_rule"] == "fixed" and provenance["ddof"] == 1


def test_thesis_dissimilarity_uses_the_unbiased_std(maps):
    result = similarity_matrix(maps, "cosine", preset="thesis")
    s = np.array([np.dot(minmax(u).ravel(), minmax(v).ravel())
                  / np.linalg.norm(minmax(u)) / np.linalg.norm(minmax(v))
                  for u, v in zip(maps[0], maps[2], strict=True)])
    expected = np.sqrt((1 - s.mean()) ** 2 + s.std(ddof=1) ** 2)
    assert result.dissimilarity.iloc[0, 2] == pytest.approx(expected, rel=1e-10)
    assert xc.dissimilarity(s, preset="thesis") == pytest.approx(expected, rel=1e-12)
    assert xc.dissimilarity(s) == pytest.approx(np.sqrt((1 - s.mean()) ** 2 + s.var()), rel=1e-12)
    # an explicit ddof wins over the preset
    assert similarity_matrix(maps, "cosine", preset="thesis", ddof=0).ddof == 0


def test_thesis_louvain_is_networkx_with_seed_42():
    labels = [f"m{i}" for i in range(14)]
    sensitive = []
    for seed in (0, 1):  # unstructured matrices: the partition depends on backend and seed
        rng = np.random.default_rng(seed)
        values = rng.random((14, 14))
        values = (values + values.T) / 2
        np.fill_diagonal(values, 0)
        D = pd.DataFrame(values, index=labels, columns=labels)
        graph = nx.Graph()
        graph.add_nodes_from(labels)
        graph.add_weighted_edges_from((labels[i], labels[j], 1 - values[i, j])
                                      for i in range(14) for j in range(i + 1, 14))
        for resolution in (1.0, 1.06):
            groups = nx.community.louvain_communities(graph, resolution=resolution, seed=42)
            expected = {m: k for k, group in enumerate(groups) for m in group}
            got = xc.communities(D, resolution=resolution, weight="dissimilarity",
                                 preset="thesis")
            assert same_pairs(got, labels) == same_pairs(expected, labels)
            toolkit = xc.communities(D, resolution=resolution, weight="dissimilarity",
                                     backend="networkx")  # seed 0
            sensitive.append(same_pairs(toolkit, labels) != same_pairs(expected, labels))
    assert any(sensitive)  # the cases tell seed 42 from seed 0


def same_pairs(partition, labels):
    return {(a, b) for a in labels for b in labels if partition[a] == partition[b]}


def test_toolkit_rbf_sigma_is_fixed_and_needs_bounded_maps(maps):
    values, details = similarity(maps[0], maps[1], "rbf", options={"normalization": "minmax"},
                                 return_details=True)
    assert details.params["sigma"] == 0.25 and details.params["sigma_rule"] == "fixed default"
    rms = [np.sqrt(np.mean((minmax(x) - minmax(y)) ** 2)) for x, y in zip(maps[0], maps[1],
                                                                          strict=True)]
    np.testing.assert_allclose(values, np.exp(-np.square(rms) / (2 * 0.25**2)), rtol=1e-10)
    with pytest.raises(UserError, match="needs sigma"):
        similarity(maps[0], maps[1], "rbf")  # raw maps: no units, no default sigma
    with pytest.raises(UserError, match="needs sigma"):
        similarity(maps[0], maps[1], "rbf", distance="euclidean",
                   options={"normalization": "minmax"})
    with pytest.raises(UserError, match="preset"):
        similarity(maps[0], maps[1], "rbf", preset="thesys")


def metric_table():
    """Every registered metric with options that give it a fixed, batch-free definition."""
    options = {name: {} for name in METRICS.names()}
    options["kappa"] = {"top_p": [20]}
    return options


@pytest.mark.parametrize("preset", ["toolkit", "thesis"])
def test_adding_images_leaves_the_old_numbers_unchanged(maps, preset):
    metrics = metric_table()
    small = similarity_matrices(maps[:, :4], metrics, preset=preset)
    full = similarity_matrices(maps, metrics, preset=preset)
    for name in metrics:
        np.testing.assert_array_equal(small[name].per_image, full[name].per_image[..., :4],
                                      err_msg=name)
        assert small[name].params == full[name].params, name
    # and the pair function: one pair's values do not depend on the other images either
    for name in metrics:
        few = similarity(maps[0, 6:], maps[2, 6:], name, preset=preset, **metrics[name])
        np.testing.assert_allclose(few, similarity(maps[0], maps[2], name, preset=preset,
                                                   **metrics[name])[6:], rtol=1e-12, atol=1e-12)


def fake_config(compare=None, cluster=None, seed=7):
    data = {"name": "s", "models": [{"source": "resnet10t"}], "seed": seed,
            "methods": {"gradcam": {}, "integrated_gradients": {}},
            "compare": compare or {}, "cluster": cluster or {}}
    return parse_config(data, check_names=False)


def louvain_of(config):
    return louvain_settings(config.cluster, config.compare, config.seed)


def test_study_config_takes_the_preset_and_its_overrides():
    thesis = fake_config({"preset": "thesis"})
    assert metric_options(thesis.compare, "gradcam", "rbf") == {"distance": "euclidean",
                                                                "sigma": THESIS_SIGMA}
    assert study_ddof(thesis.compare) == 1 and louvain_of(thesis) == ("networkx", 42)
    toolkit = fake_config()
    assert metric_options(toolkit.compare, "gradcam", "rbf") == {}
    assert study_ddof(toolkit.compare) == 0 and louvain_of(toolkit) == ("python-louvain", 7)
    custom = fake_config({"preset": "thesis", "ddof": 0,
                          "metric_options": {"rbf": {"sigma": {"gradcam": 80, "default": 10}}}},
                         {"louvain_backend": "python-louvain", "louvain_seed": 3})
    assert metric_options(custom.compare, "gradcam", "rbf")["sigma"] == 80
    assert metric_options(custom.compare, "integrated_gradients", "rbf")["sigma"] == 10
    assert study_ddof(custom.compare) == 0 and louvain_of(custom) == ("python-louvain", 3)
    no_default = fake_config({"metric_options": {"rbf": {"sigma": {"gradcam": 80}}}})
    with pytest.raises(UserError, match="no value for method 'integrated_gradients'"):
        metric_options(no_default.compare, "integrated_gradients", "rbf")
    with pytest.raises(UserError, match="median"):
        metric_options(fake_config({"metric_options": {"rbf": {"sigma": "median"}}}).compare,
                       "gradcam", "rbf")
    with pytest.raises(UserError, match="preset"):
        parse_config({"name": "s", "models": [{"source": "resnet10t"}],
                      "compare": {"preset": "published"}}, check_names=False)


def test_cluster_and_communities_ignore_a_non_zero_diagonal_with_a_warning():
    rng = np.random.default_rng(1)
    values = rng.random((5, 5))
    values = (values + values.T) / 2
    labels = list("abcde")
    clean = values.copy()
    np.fill_diagonal(clean, 0)
    published = values.copy()
    np.fill_diagonal(published, [0.217, 0, 0.1, 0, 0])
    D, D0 = (pd.DataFrame(v, index=labels, columns=labels) for v in (published, clean))
    with pytest.warns(UserWarning, match=r"diagonal .*largest \[a, a\]=0.217.* ignored"):
        tree = xc.cluster(D)
    np.testing.assert_array_equal(tree.linkage, xc.cluster(D0).linkage)
    with pytest.raises(UserError, match="zero diagonal"):
        xc.cluster(D, strict=True)
    with pytest.warns(UserWarning, match="ignored"):
        parts = xc.communities(D, weight="dissimilarity", backend="networkx")
    assert parts == xc.communities(D0, weight="dissimilarity", backend="networkx")
    with pytest.raises(UserError, match="zero diagonal"):
        xc.communities(D, weight="dissimilarity", strict=True)


@pytest.mark.parametrize("preset", ["toolkit", "thesis"])
def test_a_study_with_more_images_keeps_the_old_images_numbers(tmp_path, preset):
    from xaicompare.study import Study

    models = [{"source": "resnet10t", "pretrained": False, "num_classes": 10,
               "class_indices": None},
              {"source": "vit_tiny_patch16_224", "pretrained": False, "num_classes": 10,
               "class_indices": None, "name": "vit", "kwargs": {"img_size": 32, "patch_size": 8}}]
    metrics = ["cosine", "rbf", "kappa", "spearman"]
    per_image = {}
    for n in (4, 6):
        study = Study.from_dict({
            "name": f"grow{n}", "output": str(tmp_path / f"run{n}"), "models": models,
            "dataset": {"name": "shapes", "options": {"split": "test", "n": n, "size": 32}},
            "methods": {"gradcam": {}},
            "compare": {"metrics": metrics, "preset": preset,
                        "metric_options": {"rbf": {"sigma": 8.0}} if preset == "thesis" else {}},
        }, progress=False)
        study.run(stages=("explain", "compare", "cluster"))
        per_image[n] = {m: np.load(study.run_dir / f"arrays/similarity/gradcam__{m}.npz")
                        for m in metrics}
        from xaicompare.compare import table_provenance

        provenance = table_provenance(study.run_dir / "tables/similarity/gradcam/rbf_mean.csv")
        assert provenance["preset"] == preset and "metric.sigma" in provenance
        # the table's dissimilarity uses the preset's std (thesis: ddof=1)
        ddof = 1 if preset == "thesis" else 0
        values = per_image[n]["cosine"]["per_image"][0, 1].astype(np.float64)
        table = pd.read_csv(study.run_dir / "tables/similarity/gradcam/cosine_dissimilarity.csv",
                            comment="#", index_col=0)
        assert table.iloc[0, 1] == pytest.approx(
            np.sqrt((1 - values.mean()) ** 2 + values.std(ddof=ddof) ** 2), rel=1e-5)
        assignments = (study.run_dir / "tables/cluster/gradcam/cosine_assignments.csv")
        backend = "networkx" if preset == "thesis" else "python-louvain"
        assert table_provenance(assignments)["louvain_backend"] == backend
    for m in metrics:
        assert list(per_image[6][m]["ids"][:4]) == list(per_image[4][m]["ids"])
        np.testing.assert_array_equal(per_image[6][m]["per_image"][..., :4],
                                      per_image[4][m]["per_image"], err_msg=m)


def test_a_study_refuses_an_rbf_without_sigma_before_explaining(tmp_path):
    from xaicompare.study import Study

    study = Study.from_dict({
        "name": "nosigma", "output": str(tmp_path / "run"),
        "models": [{"source": "resnet10t", "pretrained": False, "num_classes": 10,
                    "class_indices": None}],
        "dataset": {"name": "shapes", "options": {"split": "test", "n": 2, "size": 32}},
        "compare": {"metrics": ["cosine", "rbf"], "normalization": "none"}}, progress=False)
    with pytest.raises(UserError, match=r"compare \(gradcam/rbf\): rbf needs sigma"):
        study.run()
    assert not (tmp_path / "run" / "manifest.json").exists()  # nothing was explained
